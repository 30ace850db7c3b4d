"""One explainability job, either mode: open, check, sample, explain, publish the folder whole."""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import torch

from explainability.config import AUTO, ExplainConfig
from explainability.explain import explain_images
from explainability.gallery import draw_overlays, pick_gallery, write_index
from explainability.outputs import ATTRIBUTIONS, INDEX, SUMMARY, totals, write_class_means
from explainability.sampling import sample_indices
from shared.atomic import published_folder, write_json_atomic
from shared.attribution import (
    COMPLETENESS_FLOOR,
    COMPLETENESS_TOLERANCE,
    ClassMeanMaps,
    Explainer,
    IGSettings,
    NpzWriter,
)
from shared.attribution.store import KEY_RULE, TRUE_CLASS_SUFFIX
from shared.model_inputs import open_data, open_model
from shared.sagemaker import GracefulStop, JobError, load_processing_context

log = logging.getLogger(__name__)


def settings_from(config: ExplainConfig) -> IGSettings:
    return IGSettings(n_steps=config.n_steps, method=config.method, baseline=config.baseline,
                      internal_batch_size=config.internal_batch_size,
                      noise_tunnel=config.noise_tunnel, seed=config.seed,
                      max_steps=config.max_steps)


def run(args: ExplainConfig, *, mode: str) -> None:
    """Explain the data set; train mode (`mode="train"`) also writes per-class mean maps."""
    started = time.monotonic()
    ctx = load_processing_context()
    name_of = ctx.output_name
    if args.workers:
        torch.set_num_threads(args.workers)
    model_path = args.model or ctx.paths.processing_input("model")
    data_path = args.input or ctx.paths.processing_input("data")
    if args.input is None and ctx.input_config("data").sharded and ctx.host_count > 1:
        raise JobError("the 'data' input is ShardedByS3Key, but a processed data set must reach"
                       " every host whole (its manifest names shards that S3 key sharding would"
                       " scatter): give it FullyReplicated; each host explains its own share")
    classifier = open_model(model_path)
    config = classifier.config
    inputs = open_data(data_path, config, exact_classes=mode == "train")
    settings = settings_from(args)
    chosen = sample_indices(inputs.labels, args.max_images, args.seed)
    mine = np.asarray(ctx.share(None, chosen), dtype=np.int64)  # every host holds the whole data
    explainer = Explainer(classifier, settings)
    log.info("%s mode: explaining %d of %d images (this host's share of %d) on %s, internal"
             " batch %d", mode, len(mine), len(inputs.data), len(chosen), explainer.device,
             explainer.batch_size)
    final = args.output or ctx.paths.processing_output("explanations")
    with published_folder(final) as staged:
        size = config.input_size
        means = ClassMeanMaps(config.class_names, size, size) if mode == "train" else None
        with GracefulStop() as stop, NpzWriter(staged / name_of(ATTRIBUTIONS)) as store:
            explained = explain_images(explainer, inputs, mine, store, means, stop)
        records = explained.records
        summary: dict[str, Any] = {
            "mode": mode,
            "input": str(data_path),
            "model": {"path": str(model_path), "architecture": config.architecture,
                      "classes": config.class_names, "input_size": size},
            "host": ctx.current_host,
            "hosts": ctx.hosts,
            "settings": settings_summary(args, settings, explainer),
            "attributions": {
                "file": name_of(ATTRIBUTIONS),
                "key_rule": KEY_RULE,
                "true_class_key": f"<key>{TRUE_CLASS_SUFFIX}",
                "array": "float16 H x W x 3 (pixel space, channels last like the images); they"
                         " add up to output - baseline_output (the target logit) within delta",
            },
        }
        if means is not None:
            summary["class_means"] = write_class_means(staged, name_of, means)
        chosen_records = pick_gallery(records, args.gallery_size)
        positions = {r.id: i for i, r in enumerate(inputs.data.records)}
        draw_overlays(staged, name_of, records, chosen_records, inputs.data, positions,
                      staged / name_of(ATTRIBUTIONS))
        summary["totals"] = totals(records, len(inputs.data), time.monotonic() - started,
                                   adaptive=settings.adaptive)
        summary["gallery"] = {"file": name_of(INDEX),
                              "images": [records[i].id for i in chosen_records]}
        summary["images"] = [r.to_json() for r in records]
        class_pngs = [(name, entry["png"]) for name, entry in
                      summary.get("class_means", {}).get("classes", {}).items() if "png" in entry]
        write_index(staged / name_of(INDEX), f"Integrated gradients, {mode} mode",
                    summary["totals"], records, chosen_records, class_pngs)
        write_json_atomic(staged / name_of(SUMMARY), summary)
    t = summary["totals"]
    log.info("explained %d images (%d misclassified, max |delta| %.3g, %d miss completeness,"
             " %.1f steps per image) in %.1f s; written to %s", t["images_explained"],
             t["misclassified"], t["max_abs_delta"], t["completeness_failed"], t["mean_steps"],
             t["seconds"], final)


def settings_summary(args: ExplainConfig, settings: IGSettings,
                     explainer: Explainer) -> dict[str, Any]:
    return {
        "n_steps": AUTO if settings.adaptive else settings.n_steps,
        "max_steps": settings.max_steps if settings.adaptive else None,
        "method": settings.rule,
        "baseline": settings.baseline,
        "internal_batch_size": explainer.batch_size,
        "internal_batch_size_chosen": "flag" if settings.internal_batch_size else "auto",
        "noise_tunnel": settings.noise_tunnel,
        "noise_tunnel_samples": settings.noise_samples if settings.noise_tunnel else None,
        "noise_tunnel_stdev": settings.noise_stdev if settings.noise_tunnel else None,
        "max_images": args.max_images,
        "seed": settings.seed,
        "device": str(explainer.device),
        "explained_output": "logit of the target class",
        "completeness": {
            "rule": "|delta| <= tolerance * max(|output - baseline_output|, floor)",
            "tolerance": COMPLETENESS_TOLERANCE,
            "floor": COMPLETENESS_FLOOR,
        },
    }
