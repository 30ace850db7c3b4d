"""`python -m processing {train,serve} [flags]`: the processing component's entrypoint."""

import sys

from processing.config import ServeConfig, TrainConfig
from shared.sagemaker.entrypoint import Mode, main

MODES = {
    "train": Mode(TrainConfig, "validate, split, resize and augment labelled images"),
    "serve": Mode(ServeConfig, "validate and resize production images"),
}

if __name__ == "__main__":
    sys.exit(main("processing", MODES, __doc__))
