"""``python -m amc.predict data.root=food-11 model_file=model_uint8.pt output=pred.csv``: HW7's test script.

Checks the model file against the size limit first (HW7: 300,000 bytes, else the score is 0),
decodes it, predicts the images of ``testing/`` in sorted file-name order and writes ``Id,label``.
"""

from __future__ import annotations

from omegaconf import DictConfig

from amc.config import settings_of
from amc.entry import entry_point
from amc.hw7.jobs import predict_csv


@entry_point("predict")
def main(cfg: DictConfig) -> None:
    predict_csv(settings_of(cfg))


if __name__ == "__main__":
    main()
