"""The named choices that flags, hyperparameters and file formats share.

Kept apart from the code that implements them so that a command line can be checked against
them before numpy, torch or OpenCV are imported.
"""

RESIZE_POLICIES = ("crop", "pad")  # shared.data.images.fit_square
IG_METHODS = ("gausslegendre", "riemann_left", "riemann_right", "riemann_middle",
              "riemann_trapezoid")  # captum's integral approximations
IG_BASELINES = ("black", "blur", "noise")  # shared.attribution.baselines
ENCODER_KINDS = ("untrained", "model", "softmax", "stages")  # shared.drift.encoders
# Inside a model folder: a drift detector its server tests traffic with online (algorithm.serve)
MODEL_DRIFT_FOLDER = "drift"
