"""`processing train`: labelled ImageFolders -> validated, split, resized, augmented datasets.

The `data` input, plus any `--extra-channels` (more labelled inputs, such as newly annotated
images), are merged: each image's channel is recorded in the manifest, and an image found in two
channels (the same bytes) is kept once, from the first channel listed.
"""

from __future__ import annotations

import logging
import time
from contextlib import ExitStack
from pathlib import Path

from processing.augment import augment_rows, describe_pipeline
from processing.config import SPLITS, TrainConfig
from processing.report import common_report
from processing.split import drop_duplicates, stratified_split
from shared.atomic import write_json_atomic
from shared.data import (
    DatasetWriter,
    DecodedPool,
    ImageFile,
    decode_usable,
    list_labelled_images,
    scratch_folder,
)
from shared.sagemaker import JobError, ProcessingContext, load_processing_context

log = logging.getLogger(__name__)
SPLIT_FOLDER_NAMES = {"train": ("train",), "validation": ("validation", "val"), "test": ("test",)}


def find_presplit(root: Path, mapping: dict[str, str] | None) -> dict[str, Path]:
    """The split folders of an input that ships already split; {} when it does not."""
    if mapping == {}:
        return {}
    if mapping is None:
        found = {}
        for split, names in SPLIT_FOLDER_NAMES.items():
            for name in names:
                if (root / name).is_dir():
                    found[split] = root / name
                    break
        # A lone "train" folder is more likely a class called train than a split.
        return found if "train" in found and len(found) > 1 else {}
    folders = {split: root / name for split, name in mapping.items()}
    missing = [str(p) for p in folders.values() if not p.is_dir()]
    if missing:
        raise JobError(f"--split-dirs names folders that do not exist: {', '.join(missing)}")
    return folders


def gather(root: Path, presplit: dict[str, Path]) -> tuple[list[ImageFile], dict[str, str]]:
    """All labelled files, and for pre-split input the split each relpath came from."""
    if not presplit:
        return list_labelled_images(root)[0], {}
    files, origin = [], {}
    for split, folder in presplit.items():
        for f in list_labelled_images(folder)[0]:
            relpath = f"{folder.name}/{f.relpath}"
            files.append(ImageFile(f.path, relpath, f.label))
            origin[relpath] = split
    return files, origin


def gather_channels(config: TrainConfig, ctx: ProcessingContext,
                    ) -> tuple[list[ImageFile], list[ImageFile], dict[str, str], dict[str, Path]]:
    """Every channel's files and this host's share of them (ids prefixed with the channel's name
    when there are several), the split each pre-split file came from, and the split folders."""
    names = ["data", *config.extra_channels]
    roots = {name: ctx.paths.processing_input(name) for name in names}
    if config.input:
        roots["data"] = config.input
    presplit = find_presplit(roots["data"], config.split_dirs)
    files: list[ImageFile] = []
    mine: list[ImageFile] = []
    origin: dict[str, str] = {}
    for name in names:
        if name != "data" and not roots[name].exists():  # an optional input left out
            log.warning("extra channel %r is not there (%s): nothing merged from it", name,
                        roots[name])
            continue
        found, split_of = gather(roots[name], presplit) if name == "data" else (
            list_labelled_images(roots[name])[0], {})
        if not found:
            raise JobError(f"no labelled images in {roots[name]} (the {name!r} input): expected"
                           " class folders (<class>/<image>)")
        prefix = f"{name}/" if len(names) > 1 else ""
        channel_files = [ImageFile(f.path, prefix + f.relpath, f.label, name) for f in found]
        files += channel_files
        mine += ctx.share(None if name == "data" and config.input else name, channel_files)
        # pre-split input: extra channels join the training split
        origin |= {prefix + f.relpath: split_of.get(f.relpath, "train") for f in found
                   if presplit}
    return files, mine, origin, presplit


def plan_splits(pool: DecodedPool, origin: dict[str, str], fractions: dict[str, float], seed: int,
                channels: list[str]):
    names = [f.relpath for f in pool.files]
    labels = [str(f.label) for f in pool.files]
    rank = {s: i for i, s in enumerate(SPLITS)}
    order = sorted(range(len(names)), key=lambda r: (
        rank[origin.get(names[r], "train")], channels.index(pool.files[r].channel or "data"),
        names[r]))
    kept, duplicates = drop_duplicates(pool.digests, order, names)
    if not origin:
        rows, small = stratified_split(kept, labels, fractions, seed)
        return rows, duplicates, small
    rows = {s: sorted(r for r in kept if origin[names[r]] == s) for s in SPLITS}
    carve = {s: fractions[s] for s in ("validation", "test") if not rows[s]}
    small = []
    if carve:  # a split the input does not ship is carved out of its train folder
        carved, small = stratified_split(rows["train"], labels, carve, seed)
        rows = {s: rows[s] or carved[s] for s in SPLITS}
        rows["train"] = carved["train"]
    return rows, duplicates, small


def class_names(config: TrainConfig, ctx: ProcessingContext, files: list[ImageFile]) -> list[str]:
    """The classes, the same on every host: given, or the class folders found. A host of a
    sharded input sees only its share of the folders, so there they must be given."""
    found = sorted({str(f.label) for f in files})
    if config.classes:
        unknown = sorted(set(found) - set(config.classes))
        if unknown:
            raise JobError(f"class folders {', '.join(unknown)} are not among --classes"
                           f" {', '.join(config.classes)}")
        return list(config.classes)
    sharded = [n for n in ("data", *config.extra_channels) if ctx.input_config(n).sharded]
    if sharded and ctx.host_count > 1:
        raise JobError(f"input(s) {', '.join(sharded)} are ShardedByS3Key on {ctx.host_count}"
                       " hosts, so no host sees every class folder: give the class names with"
                       " --classes so that every host writes the same classes.json")
    return found


def run(config: TrainConfig) -> None:
    started = time.monotonic()
    ctx = load_processing_context()
    root = config.input or ctx.paths.processing_input("data")
    files, share, origin, presplit = gather_channels(config, ctx)
    outputs = {s: getattr(config, f"{s}_output") or ctx.paths.processing_output(s) for s in SPLITS}
    report_dir = config.report_output or ctx.paths.processing_output("report")
    with scratch_folder(ctx.paths.scratch_root) as scratch:
        pool = decode_usable(share, size=config.image_size, policy=config.resize_policy,
                             workers=config.decode_workers, into=scratch,
                             what="input", max_bad_fraction=config.max_bad_fraction)
        rows, duplicates, small = plan_splits(pool, origin, config.fractions, config.seed,
                                              ["data", *config.extra_channels])
        usable = sorted({str(pool.files[r].label) for split in rows.values() for r in split})
        classes = class_names(config, ctx, files)  # the same on every host
        # on several hosts one host may hold a single class; the job as a whole needs two
        if len(usable if ctx.host_count == 1 else classes) < 2:
            raise JobError(f"training needs at least two classes with usable images; found"
                           f" {len(usable)}: {', '.join(usable) or 'none'}")
        counts = write_splits(config, ctx, pool, rows, classes, outputs, scratch)
    report = {
        **common_report("train", config, ctx, root, pool),
        "presplit_folders": {s: p.name for s, p in presplit.items()},
        "channels": {name: {"images": sum(f.channel == name for f in share),
                            "distribution": ctx.input_config(name).distribution,
                            "present": any(f.channel == name for f in files)}
                     for name in ("data", *config.extra_channels)},
        "images_used": sum(len(r) for r in rows.values()),
        "duplicates": duplicates,
        "classes": classes,
        "classes_without_usable_images": sorted(set(classes) - set(usable)),
        "small_classes": small,
        "split_fractions": config.fractions,
        "seed": config.seed,
        "class_counts": counts,
        "augmentation": {
            "copies": config.augment_copies,
            "pipeline": describe_pipeline(config.hflip) if config.augment_copies else [],
        },
        "seconds": round(time.monotonic() - started, 2),
    }
    write_json_atomic(report_dir / ctx.output_name("report.json"), report)
    log.info("train/validation/test: %s", {s: sum(c.values()) for s, c in counts.items()})


def write_splits(config: TrainConfig, ctx: ProcessingContext, pool: DecodedPool,
                 rows: dict[str, list[int]], classes: list[str],
                 outputs: dict[str, Path], scratch: Path) -> dict[str, dict[str, int]]:
    """Write every split; publish them only once all are complete."""
    counts: dict[str, dict[str, int]] = {}
    with ExitStack() as stack:
        writers = {}
        for split in SPLITS:
            writers[split] = stack.enter_context(DatasetWriter(
                outputs[split], config.image_size, classes=classes,
                max_shard_mb=config.max_shard_mb, host=ctx.host_tag))
            counts[split] = {c: 0 for c in classes}
        for split in ("validation", "test"):
            for row in rows[split]:
                f = pool.files[row]
                writers[split].add(pool.images[row], f.relpath, f.relpath, f.label,
                                   channel(f, config))
                counts[split][str(f.label)] += 1
        train_rows = rows["train"]
        copies = (augment_rows(pool.images, train_rows, config.augment_copies, config.seed,
                               hflip=config.hflip, workers=config.decode_workers, scratch=scratch)
                  if config.augment_copies else ((row, []) for row in train_rows))
        for row, augmented in copies:  # streamed in row order: memory stays bounded
            f = pool.files[row]
            writers["train"].add(pool.images[row], f.relpath, f.relpath, f.label, channel(f, config))
            for number, image in enumerate(augmented, start=1):
                writers["train"].add(image, f"{f.relpath}#aug{number}", f.relpath, f.label,
                                     channel(f, config))
            counts["train"][str(f.label)] += 1 + len(augmented)
        for split in SPLITS:  # how the images were made travels with them, to the model
            writers[split].commit({"split": split, "images": len(writers[split]),
                                   "class_counts": counts[split], "image_size": config.image_size,
                                   "resize_policy": config.resize_policy})
    return counts


def channel(f: ImageFile, config: TrainConfig) -> str | None:
    """What the manifest records as the image's channel: its input, when several were merged."""
    return f.channel if config.extra_channels else None
