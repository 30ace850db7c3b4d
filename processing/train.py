"""`processing train`: labelled ImageFolder -> validated, split, resized, augmented datasets."""

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
    host_share,
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


def plan_splits(pool: DecodedPool, origin: dict[str, str], fractions: dict[str, float], seed: int):
    names = [f.relpath for f in pool.files]
    labels = [str(f.label) for f in pool.files]
    rank = {s: i for i, s in enumerate(SPLITS)}
    order = sorted(range(len(names)), key=lambda r: (rank[origin.get(names[r], "train")], names[r]))
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


def run(config: TrainConfig) -> None:
    started = time.monotonic()
    ctx = load_processing_context()
    root = config.input or ctx.paths.processing_input("data")
    presplit = find_presplit(root, config.split_dirs)
    files, origin = gather(root, presplit)
    if not files:
        raise JobError(f"no labelled images in {root}: expected class folders (<class>/<image>)")
    share = host_share(files, ctx.host_index, ctx.host_count)
    outputs = {s: getattr(config, f"{s}_output") or ctx.paths.processing_output(s) for s in SPLITS}
    report_dir = config.report_output or ctx.paths.processing_output("report")
    with scratch_folder(ctx.paths.scratch_root) as scratch:
        pool = decode_usable(share, size=config.image_size, policy=config.resize_policy,
                             workers=config.decode_workers, scratch=scratch,
                             what="input", max_bad_fraction=config.max_bad_fraction)
        rows, duplicates, small = plan_splits(pool, origin, config.fractions, config.seed)
        usable = sorted({str(pool.files[r].label) for split in rows.values() for r in split})
        if len(usable) < 2:
            raise JobError(f"training needs at least two classes with usable images; found"
                           f" {len(usable)}: {', '.join(usable) or 'none'}")
        # From the whole listing, not this host's share: every host writes the same classes.json.
        classes = sorted({str(f.label) for f in files})
        counts = write_splits(config, ctx, pool, rows, classes, outputs)
    report = {
        **common_report("train", config, ctx, root, pool),
        "presplit_folders": {s: p.name for s, p in presplit.items()},
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
                 outputs: dict[str, Path]) -> dict[str, dict[str, int]]:
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
                writers[split].add(pool.images[row], f.relpath, f.relpath, f.label)
                counts[split][str(f.label)] += 1
        train_rows = rows["train"]
        copies = (augment_rows(pool.images, train_rows, config.augment_copies, config.seed,
                               hflip=config.hflip, workers=config.decode_workers)
                  if config.augment_copies else ((row, []) for row in train_rows))
        for row, augmented in copies:  # streamed in row order: memory stays bounded
            f = pool.files[row]
            writers["train"].add(pool.images[row], f.relpath, f.relpath, f.label)
            for number, image in enumerate(augmented, start=1):
                writers["train"].add(image, f"{f.relpath}#aug{number}", f.relpath, f.label)
            counts["train"][str(f.label)] += 1 + len(augmented)
        for split in SPLITS:  # how the images were made travels with them, to the model
            writers[split].commit({"split": split, "images": len(writers[split]),
                                   "class_counts": counts[split], "image_size": config.image_size,
                                   "resize_policy": config.resize_policy})
    return counts
