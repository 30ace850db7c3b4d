"""`algorithm train`: the SageMaker training job. Fine-tunes a timm model on processed datasets.

Channels: train, validation (required), test (optional, evaluated at the end), model (optional
warm start, folder or model.tar.gz). Writes the best-validation-epoch model to model/, evaluation to
model/ and output/data/, TensorBoard events to output/tensorboard, checkpoints to checkpoints/.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import asdict, dataclass, replace

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities.exceptions import SIGTERMException

from algorithm.callbacks import (
    AtomicCheckpointIO,
    EpochMetrics,
    FreezeBackbone,
    StopIfSigtermCameEarly,
    remove_partial_checkpoints,
)
from algorithm.data import ProcessedDataModule
from algorithm.evaluation import multiclass_report, plot_confusion_matrix, predict
from algorithm.hyperparameters import Hyperparameters
from algorithm.lr_finder import find_learning_rate
from algorithm.module import Classifier
from shared.atomic import write_json_atomic
from shared.choices import RESIZE_POLICIES
from shared.data import DatasetFormatError, ProcessedDataset
from shared.evaluation import accuracy_of
from shared.models import ImageClassifier, load_artifact, load_matching, save_artifact
from shared.sagemaker import JobError, JobInterrupted, TrainingContext, load_training_context
from shared.sagemaker.stop import sigterm_deferred

log = logging.getLogger(__name__)
LAST_CHECKPOINT = "last.ckpt"
DDP_PORT = "29500"


def open_channel(ctx: TrainingContext, name: str, required: bool) -> ProcessedDataset | None:
    folder = ctx.channel(name)
    ctx.input_config(name)  # a channel in Pipe mode is refused, naming it
    fifos = [p for p in ctx.paths.base.joinpath("input", "data").glob(f"{name}_*") if p.is_fifo()]
    if fifos and (folder is None or not folder.exists()):
        raise JobError(f"the {name!r} channel arrived in Pipe mode ({fifos[0].name}), which this"
                       " algorithm cannot read: give it in File or FastFile mode")
    if folder is None or not folder.exists():
        if required:
            raise JobError(f"the {name!r} channel is missing: give the training job a {name}"
                           " channel holding the processing component's output")
        return None
    sharded = ctx.input_config(name).sharded and len(ctx.hosts) > 1
    try:
        data = ProcessedDataset(folder)
        orphans = set(folder.glob("shard-*.npy")) - set(data.shard_files())
        if sharded and orphans:  # their manifest lines went to another host
            raise DatasetFormatError(f"{len(orphans)} shard(s) here have no manifest line")
    except DatasetFormatError as exc:
        why = (" (the channel is ShardedByS3Key, which splits a processed data set's files, its"
               " manifests and shards, between the hosts: give it FullyReplicated, and DDP shares"
               " it among the hosts itself)" if sharded else "")
        raise JobError(f"{name} channel: {exc}{why}") from None
    if len(data) == 0:
        raise JobError(f"the {name} channel holds no images")
    if data.classes is None or not data.labelled:
        raise JobError(f"the {name} channel is not labelled (no classes.json / labels): use"
                       " processing train mode output")
    return data


def check_classes(channels: dict[str, ProcessedDataset]) -> list[str]:
    reference = channels["train"].classes
    for name, data in channels.items():
        if data.classes != reference:
            raise JobError(f"class lists differ between channels: train has {reference},"
                           f" {name} has {data.classes}")
    shapes = {name: data.image_shape for name, data in channels.items()}
    if len(set(shapes.values())) > 1:
        raise JobError(f"image sizes differ between channels: {shapes}")
    return list(reference)


def resize_policy(train: ProcessedDataset) -> str:
    """How processing fitted the images to the square; the model must be fed the same way."""
    policy = train.report().get("resize_policy", "crop")  # written by processing train
    if policy not in RESIZE_POLICIES:
        raise JobError(f"the train channel's report names resize policy {policy!r}, not one of"
                       f" {', '.join(RESIZE_POLICIES)}")
    return policy


def build_model(ctx: TrainingContext, hp: Hyperparameters, classes: list[str], image_size: int,
                policy: str) -> ImageClassifier:
    """The classifier to train: new, or warm-started from the model channel."""
    warm = ctx.channel("model")
    if warm is None or not warm.exists():
        return ImageClassifier.create(hp.model_name, classes, image_size, resize_policy=policy,
                                      pretrained_weights=hp.pretrained_weights)
    previous = load_artifact(warm)
    config = previous.config
    if config.architecture != hp.model_name:
        log.warning("warm start: using the model's architecture %s (model_name %s ignored)",
                    config.architecture, hp.model_name)
    if config.class_names == classes:
        log.info("warm start from %s (%s)", warm, config.architecture)
        return ImageClassifier(previous.network, replace(config, input_size=image_size,
                                                         resize_policy=policy, extra={}))
    if not hp.reinitialize_head:
        raise JobError(f"the warm-start model was trained on classes {config.class_names}, the data"
                       f" has {classes}; set reinitialize_head=true to keep its backbone and train"
                       " a new classifier")
    model = ImageClassifier.create(config.architecture, classes, image_size, resize_policy=policy)
    load_matching(model.network, previous.network.state_dict(), str(warm))
    log.info("warm start: backbone from %s, new %d-class head", warm, len(classes))
    return model


@dataclass(frozen=True)
class Hardware:
    """What Lightning is told to run on."""

    accelerator: str
    devices: int
    num_nodes: int
    strategy: str
    precision: str
    num_workers: int


def hardware(ctx: TrainingContext, hp: Hyperparameters) -> Hardware:
    gpus = torch.cuda.device_count()
    devices = hp.processes_per_host or max(1, gpus)
    nodes = len(ctx.hosts)
    if nodes > 1:
        # Lightning's default cluster environment reads these; SageMaker hosts resolve by name.
        os.environ.setdefault("MASTER_ADDR", ctx.first_host)
        os.environ.setdefault("MASTER_PORT", DDP_PORT)
        os.environ.setdefault("NODE_RANK", str(ctx.host_index))
        # the hosts talk over SageMaker's network interface (resourceconfig's network_interface_name)
        os.environ.setdefault("NCCL_SOCKET_IFNAME", ctx.network_interface)
        os.environ.setdefault("GLOO_SOCKET_IFNAME", ctx.network_interface)
    precision = lightning_precision(hp.precision, bool(gpus))
    workers = hp.num_workers
    if workers < 0:
        workers = min(8, max(0, ctx.num_cpus // devices - 1)) if gpus else 0
    if not gpus:  # keep processes from oversubscribing the cores
        torch.set_num_threads(max(1, ctx.num_cpus // devices))
    return Hardware("gpu" if gpus else "cpu", devices, nodes, "ddp" if devices * nodes > 1 else "auto",
                    precision, workers)


def cpu_has_amx() -> bool:
    """Whether this CPU has AMX tiles (Intel Sapphire Rapids and later): bf16 matrix units."""
    return bool(getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)())


def lightning_precision(precision: str, gpus: bool) -> str:
    """Lightning's name for the `precision` hyperparameter on this hardware (auto: bf16-mixed on a
    GPU that has it, else 16-mixed; on a CPU, bf16-mixed where it has AMX, else float32).

    On CPUs bf16 pays only with AMX: resnet10t at 32 px trained at 1.18x the images/s of float32
    (in channels last) on a 2-core Xeon with AMX (BENCHMARKS.md, 2026-12-06), and no faster than
    float32 on an EPYC with AVX512-BF16 but no AMX (README, Benchmarks)."""
    if precision == "auto":
        if not gpus:
            return "bf16-mixed" if cpu_has_amx() else "32-true"
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    if not gpus and precision == "16-mixed":
        raise JobError("precision=16-mixed needs a GPU; use 32 or bf16-mixed on CPU")
    return "32-true" if precision == "32" else precision


def channels_last(precision: str, accelerator: str) -> bool:
    """Train in channels last? Only bf16 on a CPU: with AMX, a bf16 step ran 1.1x faster in it (a
    probe); float32 steps ran 0.95-1.05x on three hosts, not worth a second layout."""
    return accelerator == "cpu" and precision.startswith("bf16")


def run() -> None:
    ctx = load_training_context(Hyperparameters)
    hp: Hyperparameters = ctx.hyperparameters
    channels = {"train": open_channel(ctx, "train", True),
                "validation": open_channel(ctx, "validation", True)}
    test = open_channel(ctx, "test", False)
    if test is not None:
        channels["test"] = test
    classes = check_classes(channels)
    image_size = channels["train"].image_shape[0]
    log.info("training job: %d training and %d validation images, %d classes, %dx%d pixels",
             len(channels["train"]), len(channels["validation"]), len(classes), image_size,
             image_size)
    pl.seed_everything(hp.seed, workers=True, verbose=False)
    classifier = build_model(ctx, hp, classes, image_size, resize_policy(channels["train"]))
    module = Classifier(classifier, hp)
    hw = hardware(ctx, hp)
    in_channels_last = channels_last(hw.precision, hw.accelerator)
    if in_channels_last:
        module.to(memory_format=torch.channels_last)
    log.info("precision %s on %s, %s", hw.precision, hw.accelerator,
             "channels last" if in_channels_last else "channels first")
    sharded = frozenset(n for n in ("train", "validation") if ctx.input_config(n).sharded)
    data = ProcessedDataModule(channels["train"], channels["validation"],
                               batch_size=hp.batch_size, num_workers=hw.num_workers,
                               augment=hp.online_augmentation, sharded=sharded, seed=hp.seed)
    paths = ctx.paths
    checkpoint = ModelCheckpoint(dirpath=paths.checkpoints, filename="best",
                                 monitor="val_accuracy", mode="max", save_top_k=1,
                                 save_last=True, enable_version_counter=False)
    epoch_metrics = EpochMetrics(paths.output_data / "metrics.csv")
    callbacks: list[pl.Callback] = [checkpoint, epoch_metrics, StopIfSigtermCameEarly()]
    if hp.freeze_backbone_epochs:
        callbacks.append(FreezeBackbone(hp.freeze_backbone_epochs))
    if hp.early_stopping_patience:
        callbacks.append(EarlyStopping("val_loss", patience=hp.early_stopping_patience))
    trainer = pl.Trainer(
        max_epochs=hp.epochs,
        accelerator=hw.accelerator, devices=hw.devices, num_nodes=hw.num_nodes,
        strategy=hw.strategy, precision=hw.precision,
        callbacks=callbacks, plugins=[AtomicCheckpointIO()],
        logger=TensorBoardLogger(paths.output / "tensorboard", name="", version=""),
        default_root_dir=paths.checkpoints,
        enable_progress_bar=sys.stderr.isatty(), enable_model_summary=False,
        log_every_n_steps=10, num_sanity_val_steps=0, deterministic=False,
        use_distributed_sampler=False,  # the DataModule shares each channel as it arrived
    )
    remove_partial_checkpoints(paths.checkpoints)  # before any rank can write one
    last = paths.checkpoints / LAST_CHECKPOINT
    resume = last if last.exists() else None
    if resume is not None:
        log.info("resuming from %s", resume)
    # Lightning stops at the end of a batch on SIGTERM by itself: it must not be interrupted mid-step.
    with sigterm_deferred():
        try:
            if hp.lr_finder:
                find_learning_rate(trainer, module, data, hp.lr_finder_steps, hp.learning_rate,
                                   paths.output_data, paths.checkpoints)
            trainer.fit(module, datamodule=data, ckpt_path=resume, weights_only=True)
        except SIGTERMException:
            raise JobInterrupted(
                f"stopped by SIGTERM after {trainer.current_epoch} completed epoch(s); the"
                f" checkpoint in {paths.checkpoints} resumes the job when it is started again"
            ) from None
    if not trainer.is_global_zero:
        return  # only rank 0 writes outputs
    write_outputs(ctx, hp, module, checkpoint, channels)


def best_weights(module: Classifier, checkpoint: ModelCheckpoint) -> None:
    """Load the best validation epoch's weights (own checkpoint, read without unpickling code)."""
    if not checkpoint.best_model_path:
        return
    state = torch.load(checkpoint.best_model_path, map_location="cpu", weights_only=True)
    module.load_state_dict(state["state_dict"])


def write_outputs(ctx: TrainingContext, hp: Hyperparameters, module: Classifier,
                  checkpoint: ModelCheckpoint, channels: dict[str, ProcessedDataset]) -> None:
    """Evaluate the best epoch's weights, then publish: reports first, the model last.

    model.json is the last file written (see `save_artifact`), so a job stopped anywhere in here
    leaves no model.json and a rerun (which resumes from the final checkpoint) writes it all again.
    """
    paths = ctx.paths
    split = "test" if "test" in channels else "validation"
    data = channels[split]
    log.info("training finished; evaluating the best epoch's weights on %s (%d images) and"
             " writing the model", split, len(data))
    best_weights(module, checkpoint)
    # float32 and channels first, as the artifact is stored (safetensors refuses channels last)
    classifier = module.classifier.cpu().float().to(memory_format=torch.contiguous_format).eval()
    probabilities = predict(classifier, data, batch_size=max(hp.batch_size, 256))
    report = multiclass_report(data.labels, probabilities.argmax(1), classifier.config.class_names)
    accuracy = accuracy_of(report)
    threshold = hp.accuracy_threshold
    report.update({
        "evaluated_on": split,
        "images": len(data),
        "accuracy_threshold": threshold,
        "passed": True if threshold is None else bool(accuracy >= threshold),
        "best_epoch_val_accuracy": float(checkpoint.best_model_score or 0.0),
    })
    write_json_atomic(paths.output_data / "evaluation.json", report)
    plot_confusion_matrix(report, paths.output_data / "confusion_matrix.png",
                          f"{split} accuracy {accuracy:.3f}")
    write_json_atomic(paths.model / "evaluation.json", report)
    save_artifact(classifier, paths.model, extra={
        "hyperparameters": asdict(hp), "evaluation": {"split": split, "accuracy": accuracy}})
    log.info("%s accuracy %.4f%s; model written to %s", split, accuracy,
             "" if threshold is None else f" (threshold {threshold}: "
             f"{'passed' if report['passed'] else 'NOT passed'})", paths.model)
    print(json.dumps({"evaluation": split, "accuracy": round(accuracy, 4),
                      "passed": report["passed"]}), flush=True)
