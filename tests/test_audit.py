"""`make audit` (images/audit.py) decides from its sources' answers, faked here: no network in tests."""

from __future__ import annotations

import importlib.util

import pytest

from tests.conftest import ROOT

spec = importlib.util.spec_from_file_location("audit", ROOT / "images" / "audit.py")
audit = importlib.util.module_from_spec(spec)
spec.loader.exec_module(audit)

LOCK = """# header comment
alpha==1.0 --hash=sha256:00aa --hash=sha256:00bb  # groups: base
beta==2.0 --hash=sha256:11aa  # groups: dev
gamma==3.0  # groups: algorithm
"""
ADVISORY = {"id": "PYSEC-0000-1", "aliases": ["CVE-0000-1"], "fix_versions": ["2.1"]}


@pytest.fixture
def lock(tmp_path):
    path = tmp_path / "requirements.lock"
    path.write_text(LOCK)
    return path


def fake_sources(monkeypatch, pip_audit: dict, project: dict) -> None:
    monkeypatch.setattr(audit, "run_pip_audit", lambda pins: pip_audit)
    monkeypatch.setattr(audit, "project_advisories", lambda name, version: project[name])


def test_pins_are_read_without_hashes_or_comments(lock):
    assert audit.read_pins(lock) == {"alpha": "1.0", "beta": "2.0", "gamma": "3.0"}


def test_skipped_pins_fall_back_to_the_project_endpoint_and_the_rest_are_listed(
        lock, monkeypatch, capsys):
    fake_sources(monkeypatch,
                 {"alpha": {"name": "alpha", "vulns": []},
                  "beta": {"name": "beta", "skip_reason": "Dependency not found on PyPI"},
                  "gamma": {"name": "gamma", "skip_reason": "Dependency not found on PyPI"}},
                 {"beta": ("audited", []), "gamma": ("pinned 3.0, latest 4.0: ...", [])})
    assert audit.main([str(lock)]) == 0
    out = capsys.readouterr().out
    assert "3 pinned packages: 1 audited by pip-audit, 1 by the PyPI project endpoint, 1 NOT" in out
    assert "not audited: gamma==3.0" in out
    assert audit.main([str(lock), "--strict"]) == 1


def test_a_known_vulnerability_fails_the_audit_whichever_source_found_it(lock, monkeypatch, capsys):
    skipped = {"name": "x", "skip_reason": "Dependency not found on PyPI"}
    fake_sources(monkeypatch, {"alpha": {"name": "alpha", "vulns": [ADVISORY]},
                               "beta": skipped, "gamma": skipped},
                 {"beta": ("audited", [ADVISORY]), "gamma": ("audited", [])})
    assert audit.main([str(lock)]) == 1
    out = capsys.readouterr().out
    assert "VULNERABLE alpha==1.0: PYSEC-0000-1 CVE-0000-1 (fixed in: 2.1)" in out
    assert "VULNERABLE beta==2.0" in out and "gamma" not in out.split("VULNERABLE")[-1]
