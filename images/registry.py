"""Image sizes, pushing to a registry (ECR by default) and the component -> image URI map.

Called by `make image-sizes`, `make push` and `make image-uris`; only the standard library and the
`docker`/`podman` and `aws` command lines, so it runs on a CodeBuild host before any install.

- The registry defaults to ECR's for AWS_ACCOUNT_ID / AWS_REGION (else the caller's account from
  `aws sts get-caller-identity` and the configured region). For ECR, `push` logs in with
  `aws ecr get-login-password` and creates missing repositories (scan on push) first.
- `push` tags each local `<prefix>-<component>:<tag>` as `<registry>/<prefix>-<component>:<tag>`
  and `:latest`, pushes both, and records the pushed digest in build/pushed.json.
- `uris` writes {component: uri}: by digest where this registry and tag were pushed, by tag
  otherwise. Pipelines take the file with `--images`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

PUSHED = Path(__file__).resolve().parent.parent / "build" / "pushed.json"
ECR = re.compile(r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(\.cn)?$")


class RegistryError(RuntimeError):
    """Something the user must fix (credentials, a missing image); the message says what."""


def _run(command: list[str], *, stdin: str | None = None, capture: bool = False) -> str:
    try:
        result = subprocess.run(command, input=stdin, text=True, check=False,
                                stdout=subprocess.PIPE if capture else None,
                                stderr=subprocess.PIPE if capture else None)
    except FileNotFoundError:
        raise RegistryError(f"{command[0]} is not installed or not on PATH") from None
    if result.returncode != 0:
        detail = (result.stderr or "").strip() if capture else ""
        raise RegistryError(f"`{' '.join(command[:3])} ...` failed (exit {result.returncode})"
                            + (f": {detail}" if detail else ""))
    return result.stdout or ""


def default_registry() -> str:
    account = os.environ.get("AWS_ACCOUNT_ID") or _run(
        ["aws", "sts", "get-caller-identity", "--query", "Account", "--output", "text"],
        capture=True).strip()
    region = (os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
              or _run(["aws", "configure", "get", "region"], capture=True).strip())
    if not account or not region:
        raise RegistryError("set REGISTRY, or AWS_ACCOUNT_ID and AWS_REGION, for an ECR registry")
    return f"{account}.dkr.ecr.{region}.amazonaws.com"


def prepare_ecr(registry: str, engine: str, repositories: list[str]) -> None:
    region = ECR.match(registry)["region"]
    password = _run(["aws", "ecr", "get-login-password", "--region", region], capture=True)
    _run([engine, "login", "--username", "AWS", "--password-stdin", registry], stdin=password)
    for repository in repositories:
        try:
            _run(["aws", "ecr", "describe-repositories", "--region", region,
                  "--repository-names", repository], capture=True)
        except RegistryError:
            print(f"creating ECR repository {repository}")
            _run(["aws", "ecr", "create-repository", "--region", region, "--repository-name",
                  repository, "--image-scanning-configuration", "scanOnPush=true"], capture=True)


def pushed_digest(engine: str, remote: str, digest_file: Path) -> str:
    if digest_file.is_file() and digest_file.read_text().strip():
        return digest_file.read_text().strip()  # podman --digestfile
    repo = remote.rsplit(":", 1)[0]
    digests = json.loads(_run([engine, "image", "inspect", "--format", "{{json .RepoDigests}}",
                               remote], capture=True) or "[]") or []
    for entry in digests:
        if entry.startswith(repo + "@"):
            return entry.split("@", 1)[1]
    raise RegistryError(f"pushed {remote} but {engine} reports no digest for it")


def push(args: argparse.Namespace) -> None:
    repositories = [f"{args.prefix}-{c}" for c in args.components]
    for repository in repositories:
        _run([args.engine, "image", "inspect", "--format", "{{.Id}}", f"{repository}:{args.tag}"],
             capture=True)  # fails early, naming the image, when it was not built
    if ECR.match(args.registry):
        prepare_ecr(args.registry, args.engine, repositories)
    record = json.loads(args.record.read_text()) if args.record.is_file() else {}
    for component, repository in zip(args.components, repositories, strict=True):
        remote = f"{args.registry}/{repository}"
        digest = ""
        for tag in (args.tag, "latest"):
            _run([args.engine, "tag", f"{repository}:{args.tag}", f"{remote}:{tag}"])
            with tempfile.TemporaryDirectory() as scratch:
                digest_file = Path(scratch) / "digest"
                flags = ["--digestfile", str(digest_file)] if args.engine == "podman" else []
                _run([args.engine, "push", *flags, *args.engine_flag, f"{remote}:{tag}"])
                digest = digest or pushed_digest(args.engine, f"{remote}:{tag}", digest_file)
        record[f"{remote}:{args.tag}"] = f"{remote}@{digest}"
        print(f"{component}: {remote}@{digest}")
    args.record.parent.mkdir(parents=True, exist_ok=True)
    args.record.write_text(json.dumps(record, indent=2) + "\n")


def uris(args: argparse.Namespace) -> None:
    record = json.loads(args.record.read_text()) if args.record.is_file() else {}
    mapping = {}
    for component in args.components:
        by_tag = f"{args.registry}/{args.prefix}-{component}:{args.tag}"
        mapping[component] = record.get(by_tag, by_tag)
    text = json.dumps(mapping, indent=2) + "\n"
    partial = args.out.with_name(args.out.name + ".partial")
    partial.write_text(text)
    partial.replace(args.out)
    print(text, end="")


def sizes(args: argparse.Namespace) -> None:
    """Each image's size; the base's layers (torch) are stored once and shared by all four."""
    base_size = None
    for name in args.components:
        ref = f"{args.prefix}-{name}:{args.tag}"
        size = int(_run([args.engine, "image", "inspect", "--format", "{{.Size}}", ref],
                        capture=True).strip())
        if name == "base":
            base_size = size
            print(f"{ref:<48} {size / 1e6:>9,.0f} MB")
        else:
            own = f"  ({(size - base_size) / 1e6:,.0f} MB above base)" if base_size else ""
            print(f"{ref:<48} {size / 1e6:>9,.0f} MB{own}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", default="docker")
    parser.add_argument("--prefix", default="sagemaker-image-mlops")
    parser.add_argument("--tag", required=True)
    parser.add_argument("--registry", default=None, help="default: ECR of the AWS account/region")
    parser.add_argument("--record", type=Path, default=PUSHED, help="pushed digests (JSON)")
    sub = parser.add_subparsers(dest="command", required=True)
    push_cmd = sub.add_parser("push")
    push_cmd.add_argument("--engine-flag", action="append", default=[],
                          help="extra flag for `<engine> push`, e.g. --engine-flag=--quiet")
    uris_cmd = sub.add_parser("uris")
    uris_cmd.add_argument("--out", type=Path, default=Path("image-uris.json"))
    sub.add_parser("sizes")
    for command in (push_cmd, uris_cmd, sub.choices["sizes"]):
        command.add_argument("components", nargs="+")
    args = parser.parse_args(argv)
    try:
        if args.command != "sizes" and args.registry is None:
            args.registry = default_registry()
        {"push": push, "uris": uris, "sizes": sizes}[args.command](args)
    except RegistryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
