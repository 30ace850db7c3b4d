"""The Streamlit script (`python -m app` runs it): a Predict page and a Review page."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `streamlit run app/streamlit_app.py` from anywhere
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from app import predict_page, review_page  # noqa: E402
from app.settings import AppSettings  # noqa: E402

st.set_page_config(page_title="Image classification MLOps", layout="wide")
settings = AppSettings.from_environment()
page = st.sidebar.radio("Page", ["Predict", "Review"], key="page")
if page == "Predict":
    predict_page.render(settings)
else:
    review_page.render(settings)
