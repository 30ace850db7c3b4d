"""`python -m monitoring {train,serve} [flags]`: MMD data drift on raw images, as Processing jobs.

train: reference images (processing/input/data) -> detector (processing/output/detector).
serve: production images (processing/input/data) + detector (processing/input/detector) ->
report (processing/output/report/drift.json and drift.png). Drift is a result: exit 0 either way.
verdict: the reports and features every host of a multi-instance serve wrote
(processing/input/reports) -> the one drift verdict over all their images.
"""


from monitoring.config import ServeConfig, TrainConfig, VerdictConfig
from shared.sagemaker.entrypoint import Mode, exit_process, main

MODES = {
    "train": Mode(TrainConfig, "fit the drift detector on reference images"),
    "serve": Mode(ServeConfig, "test production images for drift"),
    "verdict": Mode(VerdictConfig, "one verdict over the features every host of a"
                                   " multi-instance serve wrote"),
}

if __name__ == "__main__":
    exit_process(main("monitoring", MODES, __doc__))
