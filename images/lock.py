"""The lock file, `requirements.lock`: one pin per package for Linux x86-64 / Python 3.11.

`generate` runs inside a fresh environment where `.[all]` was just installed and writes every
installed distribution as `name==version --hash=sha256:... # groups: ...`, where the groups are
the project extras (plus `base`) whose dependency closure needs it, and the hashes are those of
every file of that release this interpreter could install (its wheels for Linux x86-64 / CPython
3.11, and the sdist), as PyPI's simple index lists them. `select GROUP...` prints the pins one
image needs, so every image and the local virtual environment install the same files with
`--no-deps --require-hashes`: nothing re-resolves, and a file that differs from the one locked
is refused.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from pathlib import Path

LOCK_FILE = Path(__file__).resolve().parent.parent / "requirements.lock"
PROJECT = "sagemaker-image-mlops"
GROUPS = ("base", "processing", "algorithm", "monitoring", "explainability", "aws", "app", "tune",
          "dev")
# alibi-detect requires the GUI build of OpenCV, albumentations the headless one; both own the same
# cv2 files. Every environment gets only the headless build, which needs no libGL at run time.
SUBSTITUTES = {"opencv-python": "opencv-python-headless"}
NEVER_PINNED = {"pip", PROJECT}
SIMPLE_INDEX = "https://pypi.org/simple/{name}/"  # PEP 691 JSON: every file with its sha256


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requires(dist_name: str) -> list:
    # imported here so `select` runs on a bare python3 (image builds), where packaging may be absent
    from packaging.requirements import Requirement

    return [Requirement(r) for r in metadata.distribution(dist_name).requires or []]


def closure(requirements: list[tuple]) -> set[str]:
    """Canonical names of every installed distribution these requirements pull in.

    Each requirement comes with the extra its marker is evaluated under ("" for none).
    """
    names: set[str] = set()
    expanded: set[tuple[str, str]] = set()
    stack = list(requirements)
    while stack:
        req, extra = stack.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": extra}):
            continue
        name = SUBSTITUTES.get(canonical(req.name), canonical(req.name))
        if name == canonical(PROJECT):
            continue
        names.add(name)
        for child_extra in {"", *req.extras}:
            if (name, child_extra) not in expanded:
                expanded.add((name, child_extra))
                stack.extend((child, child_extra) for child in _requires(name))
    return names


def installable(filename: str, version: str) -> bool:
    """Whether `filename` is a file of release `version` that this interpreter could install."""
    # imported here so `select` runs on a bare python3 (image builds), where packaging may be absent
    from packaging.tags import sys_tags
    from packaging.utils import (
        InvalidSdistFilename,
        InvalidWheelFilename,
        parse_sdist_filename,
        parse_wheel_filename,
    )
    from packaging.version import Version

    try:
        if filename.endswith(".whl"):
            _, file_version, _, tags = parse_wheel_filename(filename)
            return file_version == Version(version) and bool(tags & set(sys_tags()))
        return parse_sdist_filename(filename)[1] == Version(version)
    except (InvalidWheelFilename, InvalidSdistFilename, ValueError):
        return False


def release_hashes(name: str, version: str) -> list[str]:
    """sha256 of each file of `name==version` this interpreter could install, from PyPI."""
    request = urllib.request.Request(SIMPLE_INDEX.format(name=name),
                                     headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        files = json.load(response)["files"]
    found = sorted({f["hashes"]["sha256"] for f in files
                    if "sha256" in f.get("hashes", {}) and installable(f["filename"], version)})
    if not found:
        sys.exit(f"PyPI lists no installable file of {name}=={version} with a sha256")
    return found


def generate() -> str:
    own = _requires(PROJECT)
    groups_of: dict[str, list[str]] = {}
    for group in GROUPS:  # a group: what its own requirements pull in (the base's: the rest)
        extra = "" if group == "base" else group
        mine = [r for r in own if (r.marker is None or r.marker.evaluate({"extra": ""})) == (
            group == "base")]
        for name in closure([(r, extra) for r in mine]):
            groups_of.setdefault(name, []).append(group)
    versions = {canonical(d.metadata["Name"]): d.version for d in metadata.distributions()}
    lines = [
        "# Generated by `make lock` from pyproject.toml; do not edit by hand.",
        "# Install with `pip install --no-deps --require-hashes`; `python images/lock.py select",
        "# GROUP...` picks one image's share. opencv-python is replaced by opencv-python-headless",
        "# (see images/lock.py).",
    ]
    unclaimed = sorted(set(versions) - set(groups_of) - NEVER_PINNED - set(SUBSTITUTES))
    if unclaimed:
        sys.exit(f"installed but not required by any group: {', '.join(unclaimed)}")
    missing = sorted(set(groups_of) - set(versions))
    if missing:
        sys.exit(f"required but not installed: {', '.join(missing)}; install .[all] first")
    names = sorted(groups_of)
    with ThreadPoolExecutor(8) as pool:
        hashes = dict(zip(names, pool.map(lambda n: release_hashes(n, versions[n]), names),
                          strict=True))
    for name in names:  # every group, base included: `select --only` picks a group alone
        groups = groups_of[name]
        digests = " ".join(f"--hash=sha256:{h}" for h in hashes[name])
        lines.append(f"{name}=={versions[name]} {digests}  # groups: {','.join(groups)}")
    return "\n".join(lines) + "\n"


def pinned(lock_file: Path = LOCK_FILE) -> dict[str, str]:
    """name -> version of every pin in the lock."""
    pins = {}
    for line in lock_file.read_text().splitlines():
        requirement = line.split("#", 1)[0].split()
        if requirement:
            name, _, version = requirement[0].partition("==")
            pins[canonical(name)] = version
    return pins


def latest_release(name: str) -> dict:
    """PyPI's description of the latest release: version, requires_python, requires_dist."""
    with urllib.request.urlopen(f"https://pypi.org/pypi/{name}/json", timeout=60) as response:
        return json.load(response)["info"]


def held_back(lock_file: Path = LOCK_FILE) -> list[str]:
    """Each pin older than its latest release, and what keeps it there: a requirement of an
    installed package (or of this project) that excludes the latest, or the latest release's own
    Python or dependency requirements that this environment cannot meet."""
    from packaging.requirements import Requirement
    from packaging.specifiers import SpecifierSet
    from packaging.version import Version

    pins = pinned(lock_file)
    with ThreadPoolExecutor(8) as pool:
        latest = dict(zip(pins, pool.map(latest_release, pins), strict=True))
    installed = [d for d in (*pins, canonical(PROJECT)) if _installed(d)]
    requirements = [(d, r) for d in installed for r in _requires(d)]
    extras = {(canonical(r.name), e) for _, r in requirements for e in r.extras}

    def applies(dist: str, req) -> bool:  # its marker holds here, for no extra of `dist` or
        # for an extra of `dist` that another requirement asks for
        return req.marker is None or any(req.marker.evaluate({"extra": e}) for e in
                                         {"", *(e for n, e in extras if n == canonical(dist))})

    rows = []
    for name, version in sorted(pins.items()):
        new = latest[name]["version"]
        if Version(version) >= Version(new):
            continue
        why = sorted({f"{d} requires {r}" for d, r in requirements
                      if canonical(r.name) == name and applies(d, r)
                      and not r.specifier.contains(new, prereleases=True)})
        python = latest[name].get("requires_python") or ""
        if python and not SpecifierSet(python).contains(f"{sys.version_info[0]}.{sys.version_info[1]}"):
            why.append(f"{name} {new} requires Python {python}")
        for text in latest[name].get("requires_dist") or []:
            req = Requirement(text)
            dep = canonical(req.name)
            if dep in pins and applies(name, req) and not req.specifier.contains(pins[dep], True):
                why.append(f"{name} {new} requires {req.name}{req.specifier}, held at {pins[dep]}")
        rows.append(f"{name} {version} (latest {new}): {'; '.join(why) or 'nothing found'}")
    return rows


def _installed(dist: str) -> bool:
    try:
        metadata.distribution(dist)
    except metadata.PackageNotFoundError:
        return False
    return True


def select(groups: list[str], lock_file: Path = LOCK_FILE, only: bool = False) -> list[str]:
    """The pins these groups need, with the base's unless `only` (the export's environment needs
    the SageMaker SDK, not torch)."""
    unknown = set(groups) - set(GROUPS)
    if unknown:
        sys.exit(f"unknown group(s) {sorted(unknown)}; valid: {', '.join(GROUPS)}")
    wanted = set(groups) if only else {"base", *groups}
    pins = []
    for line in lock_file.read_text().splitlines():
        pin, _, comment = line.partition("#")
        if pin.strip() and wanted & set(comment.split("groups:")[-1].strip().split(",")):
            pins.append(pin.strip())
    return pins


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("generate", help="print the lock for the current environment")
    pick = sub.add_parser("select", help="print the pins these groups need (and the base's)")
    pick.add_argument("groups", nargs="*")
    pick.add_argument("--only", action="store_true", help="these groups' pins alone, no base")
    sub.add_parser("held-back", help="print each pin behind its latest release, and why")
    args = parser.parse_args()
    if args.command == "generate":
        sys.stdout.write(generate())
    elif args.command == "held-back":
        print("\n".join(held_back()))
    else:
        print("\n".join(select(args.groups, only=args.only)))


if __name__ == "__main__":
    main()
