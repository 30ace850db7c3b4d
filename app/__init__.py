"""The Streamlit front end: predict (and explain) uploaded images, review pipeline runs.

`python -m app` starts it; the UI lives in `streamlit_app.py` and the pages it draws, everything
else (predictors, run folders, overlays) in plain modules the tests call without Streamlit.
"""
