"""``python -m amc.slim checkpoint=STUDENT data=food11``: HW7's network-slimming schedule.

Width × ``factor`` ``steps`` times; after each step the slimmer student is fine-tuned for
``train.epochs`` epochs with a *fresh* optimizer (the course's sample code kept the optimizer of
the original network, so its fine-tuning never touched the new weights).
"""

from __future__ import annotations

from amc.entry import job_entry_point
from amc.hw7.jobs import slim_schedule

main = job_entry_point("slim", slim_schedule)

if __name__ == "__main__":
    main()
