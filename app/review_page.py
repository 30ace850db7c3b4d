"""The Review page: one pipeline run's steps, evaluation, drift, explanations and batch report,
and the registry's versions with approve/reject buttons (the registry's own `set_status`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

from app.runs import RunReport, accuracy, confusion_rows, list_runs, read_run
from app.settings import AppSettings
from app.ui import registry_models, shown_errors
from pipelines.registry import APPROVED, REJECTED, Registry, RegistryError

NOTE = "set in the review app"


def show_steps(report: RunReport) -> None:
    state = ("running" if not report.finished else "succeeded" if report.ok else "FAILED")
    st.subheader(f"Pipeline {report.pipeline}: {state}")
    st.dataframe({"step": [s.name for s in report.steps],
                  "state": [s.state for s in report.steps],
                  "seconds": [None if s.seconds is None else round(s.seconds, 1)
                              for s in report.steps],
                  "detail": [s.detail for s in report.steps]}, hide_index=True)


def show_evaluation(evaluation: dict[str, Any], png: Path | None) -> None:
    st.subheader("Evaluation")
    value = accuracy(evaluation)
    left, right = st.columns(2)
    left.metric("Accuracy", "-" if value is None else f"{value:.4f}")
    champion = evaluation.get("champion") or {}
    if champion.get("verdict"):
        right.metric("Champion", "passed" if champion.get("passed") else "not passed",
                     help=champion["verdict"])
    rows = confusion_rows(evaluation)
    if rows:
        st.caption("Confusion matrix (rows: actual class, columns: predicted class)")
        st.dataframe({"actual": list(rows), **{p: [rows[a].get(p, 0) for a in rows]
                                               for p in next(iter(rows.values()))}},
                     hide_index=True)
    if png is not None:
        st.image(str(png), caption="confusion matrix", width=360)
    robustness = evaluation.get("robustness")
    if robustness:
        st.caption(f"Robustness: mean relative accuracy drop {robustness['relative_drop']:.3f}"
                   f" (worst {robustness.get('worst_relative_drop', 0):.3f})")
        corruptions = robustness.get("corruptions") or {}
        st.dataframe({"corruption": list(corruptions),
                      "severity": [str(c.get("severity")) for c in corruptions.values()],
                      "accuracy": [c.get("accuracy") for c in corruptions.values()],
                      "relative drop": [c.get("relative_drop") for c in corruptions.values()]},
                     hide_index=True)


def show_drift(drift: dict[str, Any], png: Path | None) -> None:
    st.subheader("Drift")
    text = (f"p-value {drift.get('p_value', float('nan')):.4g} (threshold"
            f" {drift.get('p_value_threshold', float('nan'))}), MMD² {drift.get('distance', 0):.3g},"
            f" {drift.get('n_test', '?')} images against {drift.get('n_reference', '?')}")
    if drift.get("drift"):
        st.warning(f"Drift detected: {text}")
    else:
        st.success(f"No drift: {text}")
    windows = drift.get("windows_with_drift")
    if windows:
        st.caption(f"Windows with drift: {', '.join(map(str, windows))}")
    if png is not None:
        st.image(str(png), caption="drift test", width=640)


def show_gallery(report: RunReport) -> None:
    st.subheader(f"Explanations ({len(report.gallery)} in the gallery)")
    columns = st.columns(2)
    for n, image in enumerate(report.gallery):
        columns[n % 2].image(str(image.path), caption=image.caption)


def show_batch_report(batch: dict[str, Any]) -> None:
    st.subheader("Batch report")
    value = batch.get("accuracy")
    st.markdown(f"{batch.get('images', 0)} images, {batch.get('labelled', 0)} labelled"
                + ("" if value is None else f", accuracy {value:.4f}"))


def _set_status(root: str, name: str, number: int, status: str) -> None:
    """Button callback: runs before the page is drawn again, so the list shows the new status."""
    try:
        Registry(Path(root), name).set_status(number, status, NOTE)
        st.session_state["registry_message"] = ("success", f"{name} v{number}: {status}")
    except RegistryError as exc:
        st.session_state["registry_message"] = ("error", str(exc))


def show_registry(root: Path, registered: list[Path]) -> None:
    st.subheader("Registry")
    models = registry_models(root)
    if not models:
        st.info(f"No registered models in {root}.")
        return
    from_run = [p.parent.name for p in registered if p.parent.name in models]
    name = st.selectbox("Model", models, key="review_model",
                        index=models.index(from_run[0]) if from_run else 0)
    message = st.session_state.pop("registry_message", None)
    if message:
        (st.success if message[0] == "success" else st.error)(message[1])
    this_run = {p.resolve() for p in registered}
    for version in reversed(Registry(root, name).versions()):
        value = version.metadata.get("accuracy")
        mark = " (this run)" if version.folder.resolve() in this_run else ""
        line, approve, reject = st.columns([4, 1, 1])
        line.markdown(f"**v{version.number}**{mark}: {version.status}, accuracy"
                      f" {'-' if value is None else f'{value:.4f}'},"
                      f" registered {version.metadata.get('registered', '?')}")
        approve.button("Approve", key=f"approve-{name}-{version.number}",
                       disabled=version.status == APPROVED, on_click=_set_status,
                       args=(str(root), name, version.number, APPROVED))
        reject.button("Reject", key=f"reject-{name}-{version.number}",
                      disabled=version.status == REJECTED, on_click=_set_status,
                      args=(str(root), name, version.number, REJECTED))


def registry_root(settings: AppSettings, report: RunReport | None) -> Path:
    """The registry the run registered into when it did, else the app's."""
    if report is not None and report.registered:
        return report.registered[0].parent.parent
    return settings.registry


def render(settings: AppSettings) -> None:
    st.header("Review a pipeline run")
    root = Path(st.text_input("Runs folder", str(settings.runs), key="runs_root"))
    runs = list_runs(root)
    report = None
    if not runs:
        st.info(f"No pipeline runs in {root} (a run folder holds run.json).")
    else:
        by_name = {p.name: p for p in runs}  # newest first
        chosen = by_name[st.selectbox("Run", list(by_name), key="run")]
        with shown_errors(f"reading {chosen}"):
            report = read_run(chosen)
            show_steps(report)
            if report.evaluation is not None:
                show_evaluation(report.evaluation, report.confusion_matrix_png)
            if report.drift is not None:
                show_drift(report.drift, report.drift_png)
            if report.gallery:
                show_gallery(report)
            if report.batch_report is not None:
                show_batch_report(report.batch_report)
    with shown_errors("reading the registry"):
        show_registry(Path(st.text_input("Registry", str(registry_root(settings, report)),
                                         key="review_registry")), report.registered if report else [])
