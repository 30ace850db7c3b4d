"""`python -m explainability {train,serve} [flags]`: the explainability component's entrypoint.

Both modes explain every image of a processed data set (or a seeded, stratified sample) with
integrated gradients; train mode also writes per-class mean attribution maps, the reference that
production explanations are compared against.
"""


from explainability.config import ServeConfig, TrainConfig
from shared.sagemaker.entrypoint import Mode, exit_process, main

MODES = {
    "train": Mode(TrainConfig, "explain training/validation images and write per-class reference"
                               " maps"),
    "serve": Mode(ServeConfig, "explain production images"),
}

if __name__ == "__main__":
    exit_process(main("explainability", MODES, __doc__))
