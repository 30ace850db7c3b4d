"""The training job's hyperparameters, declared once (SageMaker passes them as strings)."""

from shared.sagemaker import HyperparameterSpec, Param

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
SCHEDULERS = ("none", "cosine", "step", "onecycle")
PRECISIONS = ("auto", "32", "16-mixed", "bf16-mixed")

SPEC = HyperparameterSpec((
    Param("model_name", str, "resnet18", "any timm architecture (timm.list_models())"),
    Param("epochs", int, 10, "passes over the training data", min=1, max=10_000),
    Param("batch_size", int, 64, "images per step on each process", min=1, max=65_536),
    Param("optimizer", str, "adamw", "optimizer", choices=OPTIMIZERS),
    Param("learning_rate", float, 1e-3, "peak learning rate", min=0.0, max=10.0),
    Param("weight_decay", float, 1e-4, "L2 / decoupled weight decay", min=0.0, max=1.0),
    Param("momentum", float, 0.9, "momentum for sgd and rmsprop", min=0.0, max=1.0),
    Param("lr_scheduler", str, "cosine", "learning-rate schedule", choices=SCHEDULERS),
    Param("label_smoothing", float, 0.0, "cross-entropy label smoothing", min=0.0, max=0.5),
    Param("early_stopping_patience", int, 0, "epochs without val_loss improvement before"
          " stopping; 0 disables", min=0),
    Param("seed", int, 42, "seed for weights, shuffling and augmentation", min=0),
    Param("num_workers", int, -1, "data loader processes; -1 picks (0 on CPU, up to 8 on GPU)",
          min=-1, max=64),
    Param("precision", str, "auto", "numeric precision; auto is bf16/16-mixed on GPU, 32 on CPU",
          choices=PRECISIONS),
    Param("pretrained_weights", str, None, "path to a local .safetensors file for the backbone",
          optional=True),
    Param("freeze_backbone_epochs", int, 0, "train only the classifier for this many first epochs",
          min=0),
    Param("accuracy_threshold", float, None, "evaluation.json records passed=false below this",
          min=0.0, max=1.0, optional=True),
    Param("online_augmentation", bool, False, "random flips/affine while training (processing"
          " already augments offline)"),
    Param("reinitialize_head", bool, False, "allow a warm-start model with other classes: keep"
          " its backbone, start a new classifier"),
    Param("processes_per_host", int, 0, "training processes per host; 0 is one per GPU (or 1 on"
          " CPU); more than 1 uses DDP", min=0, max=64),
))
