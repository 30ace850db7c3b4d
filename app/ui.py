"""What both pages share: errors shown as messages (never tracebacks) and the registry's models."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import streamlit as st

from shared.errors import UserError

log = logging.getLogger("app")


@contextmanager
def shown_errors(what: str) -> Iterator[None]:
    """A UserError is shown as it stands; anything else is a fault of the app: a one-line message
    on the page and the traceback in the app's log."""
    try:
        yield
    except UserError as exc:
        st.error(str(exc))
    except Exception as exc:  # noqa: BLE001 - the page must stay up, the log keeps the trace
        log.exception("%s failed", what)
        st.error(f"{what} failed: {type(exc).__name__}: {exc} (the app's log has the details)")


def registry_models(root: Path) -> list[str]:
    """Model package names in a local registry folder."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
