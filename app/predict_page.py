"""The Predict page: upload images, score them with a local model, a model server or a SageMaker
endpoint, show the top-k classes and, for a local model, the integrated-gradients overlay."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from app.predictors import (
    EndpointPredictor,
    LocalPredictor,
    PredictionError,
    Predictor,
    ServerPredictor,
    load_local_model,
)
from app.settings import AppSettings
from app.ui import registry_models, shown_errors
from pipelines.registry import Registry
from shared.data.images import IMAGE_SUFFIXES

LOCAL, SERVER, ENDPOINT = "Local model", "Model server URL", "SageMaker endpoint"
REGISTERED, PATH = "Registered version", "Model folder or model.tar.gz"
UPLOAD_TYPES = sorted(s.lstrip(".") for s in IMAGE_SUFFIXES)


def _stamp(path: Path) -> int:
    """The artifact's modification time: a model rewritten at the same path is loaded afresh."""
    try:
        return Path(path).stat().st_mtime_ns
    except OSError:
        return 0


@st.cache_resource(show_spinner="Loading the model...", max_entries=4)
def cached_predictor(path: str, stamp: int) -> LocalPredictor:
    return LocalPredictor(load_local_model(Path(path)))


@st.cache_resource(show_spinner=False, max_entries=4)
def cached_explainer(path: str, stamp: int):
    from app.overlay import make_explainer

    return make_explainer(cached_predictor(path, stamp).classifier)


def choose_local_model(settings: AppSettings) -> Path | None:
    how = st.radio("Model", [REGISTERED, PATH], horizontal=True, key="local_how")
    if how == PATH:
        text = st.text_input("Model folder or model.tar.gz", key="model_path").strip()
        return Path(text).expanduser() if text else None
    root = Path(st.text_input("Registry", str(settings.registry), key="predict_registry"))
    models = registry_models(root)
    if not models:
        st.info(f"No registered models in {root}: register one with a training pipeline run,"
                " or give a model folder.")
        return None
    name = st.selectbox("Registered model", models, key="predict_model_name")
    versions = Registry(root, name).versions()
    if not versions:
        st.info(f"Model {name} has no versions yet.")
        return None
    labels = {f"v{v.number} ({v.status})": v for v in reversed(versions)}
    chosen = labels[st.selectbox("Version", list(labels), key="predict_version")]
    return chosen.folder / "model"


def choose_predictor(settings: AppSettings) -> tuple[Predictor | None, str | None]:
    """The predictor the sidebar describes, and the local model's path (overlays need one)."""
    source = st.radio("Predict with", [LOCAL, SERVER, ENDPOINT], key="source")
    if source == LOCAL:
        path = choose_local_model(settings)
        if path is None:
            return None, None
        key = str(path.resolve())
        try:
            return cached_predictor(key, _stamp(path)), key
        except PredictionError as exc:
            st.error(str(exc))
            return None, None
    if source == SERVER:
        url = st.text_input("Model server URL", "http://127.0.0.1:8080", key="server_url")
        try:
            return ServerPredictor(url), None
        except PredictionError as exc:
            st.error(str(exc))
            return None, None
    endpoint = st.text_input("Endpoint name", key="endpoint_name")
    region = st.text_input("AWS region (blank: the configured one)", key="endpoint_region")
    if not endpoint.strip():
        st.info("Give the SageMaker endpoint's name.")
        return None, None
    try:
        return EndpointPredictor(endpoint, region.strip() or None), None
    except PredictionError as exc:
        st.error(str(exc))
        return None, None


def show_prediction(predictor: Predictor, upload, k: int, model_key: str | None,
                    explain: bool) -> None:
    data = upload.getvalue()
    with shown_errors(f"predicting {upload.name}"):
        prediction = predictor.predict(upload.name, data, upload.type or "")
        picture, figures = st.columns([1, 3])
        picture.image(data, caption=upload.name, width=128)
        best, probability = prediction.ranked[0]
        figures.markdown(f"**{upload.name}**: predicted class **{best}** ({probability:.1%})")
        figures.dataframe({"class": [c for c, _ in prediction.top(k)],
                           "probability": [round(p, 4) for _, p in prediction.top(k)]},
                          hide_index=True)
        if explain and model_key is not None:
            with st.spinner("Integrated gradients..."):
                from app.overlay import overlay_png

                image = predictor.square(upload.name, data)
                st.image(overlay_png(cached_explainer(model_key, _stamp(Path(model_key))), image,
                                     upload.name), caption=f"integrated gradients: {upload.name}")


def render(settings: AppSettings) -> None:
    st.header("Predict")
    with st.sidebar:
        predictor, model_key = choose_predictor(settings)
        k = st.number_input("Top k classes", min_value=1, max_value=20, value=3, key="top_k")
        explain = st.checkbox("Integrated-gradients overlay", key="explain",
                              disabled=model_key is None,
                              help="explains the predicted class with shared.attribution; needs"
                                   " a local model (the gradients are computed here)")
    uploads = st.file_uploader("Images", type=UPLOAD_TYPES, accept_multiple_files=True,
                               key="images")
    if not uploads:
        st.caption("Upload one or more images to classify them.")
        return
    if predictor is None:
        st.warning("Choose a model to predict with (in the sidebar).")
        return
    for upload in uploads:
        show_prediction(predictor, upload, int(k), model_key, explain)
