"""Known vulnerabilities in the pinned packages of requirements.lock: `make audit`.

pip-audit checks each pin against PyPI's advisory data (the per-release JSON endpoint). Where it
cannot (that endpoint unreachable, as on some mirrors and proxies, or OSV not resolvable), it
reports the package as skipped and still says "No known vulnerabilities found": an audit of
nothing that looks green. So the skipped pins get a second look at the project endpoint, whose
`vulnerabilities` list describes the latest release only: a pin equal to the latest release is
audited that way, any other pin is reported as not audited. The summary says which was which.

Exit status: 1 when a pinned version has a known vulnerability, 0 otherwise (unaudited pins are
listed, not failed, unless --strict).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

PROJECT_URL = "https://pypi.org/pypi/{name}/json"


def read_pins(lock: Path) -> dict[str, str]:
    pins = {}
    for line in lock.read_text().splitlines():
        requirement = line.split("#", 1)[0].split()  # name==version [--hash=...]
        if requirement:
            name, _, version = requirement[0].partition("==")
            pins[name.strip().lower()] = version.strip()
    return pins


def run_pip_audit(pins: dict[str, str]) -> dict[str, dict]:
    """pip-audit's verdict per package: {"vulns": [...]} or {"skip_reason": "..."}."""
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as requirements:
        requirements.write("".join(f"{n}=={v}\n" for n, v in pins.items()))
        requirements.flush()
        result = subprocess.run(
            [sys.executable, "-m", "pip_audit", "-r", requirements.name, "--no-deps",
             "--disable-pip", "--progress-spinner", "off", "-f", "json"],
            capture_output=True, text=True, timeout=600)
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        print(f"pip-audit gave no report (exit {result.returncode}): {result.stderr[-500:]}")
        return {}
    return {d["name"].lower(): d for d in report.get("dependencies", [])}


def project_advisories(name: str, version: str) -> tuple[str, list[dict]]:
    """("audited", vulns) when `version` is the latest release, else ("why not", [])."""
    try:
        with urllib.request.urlopen(PROJECT_URL.format(name=name), timeout=20) as response:
            data = json.load(response)
    except (urllib.error.URLError, TimeoutError, json.JSONDecodeError) as exc:
        return f"PyPI project data unavailable ({exc})", []
    latest = data.get("info", {}).get("version")
    if latest != version:
        return (f"pinned {version}, latest {latest}: the project endpoint lists advisories for the"
                " latest release only"), []
    vulns = [{"id": v.get("id"), "aliases": v.get("aliases", []), "fix_versions": v.get("fixed_in", [])}
             for v in data.get("vulnerabilities") or [] if not v.get("withdrawn")]
    return "audited", vulns


def audit(lock: Path) -> tuple[dict[str, list], dict[str, str], dict[str, str]]:
    """(vulnerable pins, how each pin was audited, why each unaudited pin was not)."""
    pins = read_pins(lock)
    verdicts = run_pip_audit(pins)
    found, method, unaudited = {}, {}, {}
    skipped = []
    for name in pins:
        verdict = verdicts.get(name, {"skip_reason": "not in pip-audit's report"})
        if "skip_reason" in verdict:
            skipped.append(name)
            continue
        method[name] = "pip-audit"
        if verdict.get("vulns"):
            found[name] = verdict["vulns"]
    with ThreadPoolExecutor(8) as pool:
        answers = pool.map(lambda n: project_advisories(n, pins[n]), skipped)
        for name, (status, vulns) in zip(skipped, answers, strict=True):
            if status != "audited":
                unaudited[name] = status
                continue
            method[name] = "PyPI project endpoint (pin is the latest release)"
            if vulns:
                found[name] = vulns
    return found, method, unaudited


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("lock", type=Path, nargs="?", default=Path("requirements.lock"))
    parser.add_argument("--strict", action="store_true", help="also fail when a pin was not audited")
    args = parser.parse_args(argv)
    pins = read_pins(args.lock)
    found, method, unaudited = audit(args.lock)
    by_pip_audit = sum(m == "pip-audit" for m in method.values())
    print(f"{len(pins)} pinned packages: {by_pip_audit} audited by pip-audit,"
          f" {len(method) - by_pip_audit} by the PyPI project endpoint,"
          f" {len(unaudited)} NOT audited")
    for name, why in sorted(unaudited.items()):
        print(f"  not audited: {name}=={pins[name]}: {why}")
    for name, vulns in sorted(found.items()):
        for v in vulns:
            fixes = ", ".join(v.get("fix_versions") or []) or "none yet"
            print(f"VULNERABLE {name}=={pins[name]}: {v.get('id')}"
                  f" {' '.join(v.get('aliases') or [])} (fixed in: {fixes})")
    if found:
        print(f"{len(found)} pinned package(s) with known vulnerabilities: raise the pin (make lock)"
              " or drop the package, then run make audit again")
        return 1
    print(f"no known vulnerabilities in the {len(method)} audited pins")
    return 1 if args.strict and unaudited else 0


if __name__ == "__main__":
    sys.exit(main())
