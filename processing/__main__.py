"""`python -m processing {train,serve} [flags]`: the processing component's entrypoint."""


from processing.config import ServeConfig, TrainConfig
from shared.sagemaker.entrypoint import Mode, exit_process, main

MODES = {
    "train": Mode(TrainConfig, "validate, split, resize and augment labelled images"),
    "serve": Mode(ServeConfig, "validate and resize production images"),
}

if __name__ == "__main__":
    exit_process(main("processing", MODES, __doc__))
