"""`processing train`: labelled ImageFolder -> validated, split, resized, augmented datasets."""

from __future__ import annotations

import argparse
import logging
import time
from contextlib import ExitStack
from pathlib import Path

from processing.augment import augment_rows, describe_pipeline
from processing.common import host_prefix, scratch, workers
from processing.split import SPLITS, drop_duplicates, stratified_split
from processing.validate import size_statistics, validate_images
from shared.data import (
    DatasetWriter,
    DecodedPool,
    ImageFile,
    host_share,
    list_labelled_images,
    write_json_atomic,
)
from shared.sagemaker import JobError, ProcessingContext

log = logging.getLogger(__name__)
SPLIT_FOLDER_NAMES = {"train": ("train",), "validation": ("validation", "val"), "test": ("test",)}


def parse_split_dirs(text: str) -> dict[str, str] | None:
    """`auto` (None), `none` ({}), or `train=seg_train,test=seg_test` (split -> folder name)."""
    if text == "auto":
        return None
    if text == "none":
        return {}
    mapping = {}
    for part in text.split(","):
        split, sep, folder = part.partition("=")
        if not sep or split.strip() not in SPLITS or not folder.strip():
            raise argparse.ArgumentTypeError(
                f"--split-dirs {text!r}: expected auto, none or SPLIT=FOLDER pairs such as"
                f" train=seg_train,test=seg_test with SPLIT one of {', '.join(SPLITS)}")
        mapping[split.strip()] = folder.strip()
    if "train" not in mapping:
        raise argparse.ArgumentTypeError("--split-dirs must name the train folder")
    return mapping


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


def run(args: argparse.Namespace, ctx: ProcessingContext) -> None:
    started = time.monotonic()
    root = args.input or ctx.paths.input("data")
    presplit = find_presplit(root, args.split_dirs)
    files, origin = gather(root, presplit)
    if not files:
        raise JobError(f"no labelled images in {root}: expected class folders (<class>/<image>)")
    share = host_share(files, ctx.host_index, ctx.host_count)
    fractions = {"validation": args.validation_fraction, "test": args.test_fraction}
    outputs = {s: getattr(args, f"{s}_output") or ctx.paths.output(s) for s in SPLITS}
    report_dir = args.report_output or ctx.paths.output("report")
    with scratch(ctx) as scratch_dir:
        pool = validate_images(share, size=args.image_size, policy=args.resize_policy,
                               workers=workers(args), scratch=scratch_dir,
                               max_bad_fraction=args.max_bad_fraction)
        rows, duplicates, small = plan_splits(pool, origin, fractions, args.seed)
        usable = sorted({str(pool.files[r].label) for split in rows.values() for r in split})
        if len(usable) < 2:
            raise JobError(f"training needs at least two classes with usable images; found"
                           f" {len(usable)}: {', '.join(usable) or 'none'}")
        # From the whole listing, not this host's share: every host writes the same classes.json.
        classes = sorted({str(f.label) for f in files})
        counts = write_splits(args, ctx, pool, rows, classes, outputs)
    report = {
        "mode": "train",
        "input": str(root),
        "presplit_folders": {s: p.name for s, p in presplit.items()},
        "host": ctx.current_host,
        "hosts": ctx.hosts,
        "image_size": args.image_size,
        "resize_policy": args.resize_policy,
        "images_found": pool.found,
        "images_used": sum(len(r) for r in rows.values()),
        "skipped": pool.skipped,
        "skipped_fraction": round(len(pool.skipped) / pool.found, 4),
        "duplicates": duplicates,
        "classes": classes,
        "classes_without_usable_images": sorted(set(classes) - set(usable)),
        "small_classes": small,
        "split_fractions": fractions,
        "seed": args.seed,
        "class_counts": counts,
        "augmentation": {
            "copies": args.augment_copies,
            "pipeline": describe_pipeline(args.hflip) if args.augment_copies else [],
        },
        "image_sizes": size_statistics(pool.sizes),
        "seconds": round(time.monotonic() - started, 2),
    }
    name = f"report-{host_prefix(ctx)}.json" if host_prefix(ctx) else "report.json"
    write_json_atomic(report_dir / name, report)
    log.info("train/validation/test: %s", {s: sum(c.values()) for s, c in counts.items()})


def write_splits(args, ctx, pool: DecodedPool, rows, classes, outputs) -> dict[str, dict[str, int]]:
    """Write every split; publish them only once all are complete."""
    counts: dict[str, dict[str, int]] = {}
    with ExitStack() as stack:
        writers = {}
        for split in SPLITS:
            writers[split] = stack.enter_context(DatasetWriter(
                outputs[split], args.image_size, classes=classes,
                max_shard_mb=args.max_shard_mb, prefix=host_prefix(ctx)))
            counts[split] = {c: 0 for c in classes}
        for split in ("validation", "test"):
            for row in rows[split]:
                f = pool.files[row]
                writers[split].add(pool.images[row], f.relpath, f.relpath, f.label)
                counts[split][str(f.label)] += 1
        train_rows = rows["train"]
        copies = (augment_rows(pool.images, train_rows, args.augment_copies, args.seed,
                               hflip=args.hflip, workers=workers(args))
                  if args.augment_copies else ((row, []) for row in train_rows))
        for row, augmented in copies:  # streamed in row order: memory stays bounded
            f = pool.files[row]
            writers["train"].add(pool.images[row], f.relpath, f.relpath, f.label)
            for number, image in enumerate(augmented, start=1):
                writers["train"].add(image, f"{f.relpath}#aug{number}", f.relpath, f.label)
            counts["train"][str(f.label)] += 1 + len(augmented)
        for split in SPLITS:
            writers[split].commit({"split": split, "images": len(writers[split]),
                                   "class_counts": counts[split]})
    return counts
