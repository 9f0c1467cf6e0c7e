"""``python -m amc.slim checkpoint=STUDENT data=food11``: HW7's network-slimming schedule.

Width × ``factor`` ``steps`` times; after each step the slimmer student is fine-tuned for
``train.epochs`` epochs with a *fresh* optimizer (the course's sample code kept the optimizer of
the original network, so its fine-tuning never touched the new weights).
"""

from __future__ import annotations

from omegaconf import DictConfig

from amc.config import start_run
from amc.entry import entry_point
from amc.hw7.jobs import slim_schedule


@entry_point("slim")
def main(cfg: DictConfig) -> None:
    settings, run_dir = start_run(cfg)
    slim_schedule(settings, run_dir)


if __name__ == "__main__":
    main()
