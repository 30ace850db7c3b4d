"""`python -m <component> <mode> [flags]`: every component's entrypoint, built from its mode table.

A component's `__main__` names its modes in one table of `Mode`s. Each mode has a frozen dataclass
of its flags (declared with `shared.schema.setting`) whose `run()` does the job: it imports the
job's module only when called, so nothing heavy loads before the flags are checked. Every flag is
offered with its type, default and range in `--help`; a bad flag or value is reported before any
heavy import, both on stderr and where SageMaker reads a failure reason; `run()` then runs inside
`run_job`.
"""

from __future__ import annotations

import argparse
import atexit
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from shared import schema
from shared.logs import configure_logging
from shared.sagemaker.failure import run_job, write_reason
from shared.sagemaker.paths import JobPaths
from shared.schema import setting

# Where each kind of job's failure reason goes; a server has none (an endpoint reads no file,
# and its /opt/ml may be read-only).
FAILURE_FILES: dict[str, Callable[[], Path | None]] = {
    "processing": lambda: JobPaths.current().message_file,
    "training": lambda: JobPaths.current().failure_file,
    "server": lambda: None,
}


@dataclass(frozen=True)
class Mode:
    """One mode of a component: the config its flags fill, and what kind of job it is."""

    config: type  # a frozen dataclass declared with shared.schema.setting, with a run() method
    help: str
    job: str = "processing"  # processing, training or server: where a failure reason goes
    epilog: str = ""


def input_flag(name: str, what: str) -> Any:
    """A processing input's folder: none means where SageMaker mounts it."""
    return setting(None, help=f"{what} (default: processing/input/{name})")


def output_flag(name: str, what: str) -> Any:
    """A processing output's folder: none means where SageMaker uploads it from."""
    return setting(None, help=f"{what} (default: processing/output/{name})")


def add_flags(parser: argparse.ArgumentParser, config: type) -> None:
    """One flag per field (`--image-size` for image_size), its help saying type, default, range."""
    for field, tp in schema.fields_of(config):
        rule = schema.rule_of(field)
        flag = "--" + field.name.replace("_", "-")
        text = schema.help_line(field, tp).replace("%", "%%")
        if schema.type_name(tp) == "true/false":
            parser.add_argument(flag, dest=field.name, action=argparse.BooleanOptionalAction,
                                default=None, help=text)
        else:
            choices = "{" + ",".join(map(str, rule.choices)) + "}" if rule.choices else None
            parser.add_argument(flag, dest=field.name, default=None, help=text,
                                metavar=rule.metavar or choices or schema.type_name(tp).upper())


def config_from_flags(config: type, args: argparse.Namespace) -> Any:
    """The config dataclass from the parsed flags: each given value checked against its rule."""
    values = {}
    for field, tp in schema.fields_of(config):
        given = getattr(args, field.name, None)
        if given is None:
            continue
        flag = "--" + field.name.replace("_", "-")
        values[field.name] = given if isinstance(given, bool) else schema.parse_text(
            flag, field, tp, given)
    return config(**values)  # the config's own cross-field checks run in __post_init__


def reporting_parser(failure_file: Path | None) -> type[argparse.ArgumentParser]:
    """An ArgumentParser class whose usage errors also reach SageMaker as the failure reason."""

    class ReportingParser(argparse.ArgumentParser):
        def error(self, message: str):  # type: ignore[override]
            write_reason(failure_file, f"bad arguments: {message}")
            super().error(message)

    return ReportingParser


def build_parser(component: str, modes: dict[str, Mode], description: str,
                 failure_file: Path | None = None) -> argparse.ArgumentParser:
    parser = reporting_parser(failure_file)(prog=f"python -m {component}", description=description,
                                            formatter_class=argparse.RawDescriptionHelpFormatter)
    subparsers = parser.add_subparsers(dest="mode", required=True)
    for name, mode in modes.items():
        sub = subparsers.add_parser(name, help=mode.help, description=mode.help,
                                    epilog=mode.epilog,
                                    formatter_class=argparse.RawDescriptionHelpFormatter)
        add_flags(sub, mode.config)
    return parser


def main(component: str, modes: dict[str, Mode], description: str,
         argv: list[str] | None = None) -> int:
    configure_logging()
    argv = sys.argv[1:] if argv is None else argv
    chosen = modes.get(argv[0]) if argv else None  # before parsing: a usage error needs it too
    failure_file = FAILURE_FILES[(chosen or next(iter(modes.values()))).job]()
    parser = build_parser(component, modes, description, failure_file)
    args = parser.parse_args(argv)
    try:
        config = config_from_flags(modes[args.mode].config, args)
    except schema.SchemaError as exc:
        parser.error(str(exc))
    return run_job(config.run, failure_file)


def exit_process(code: int) -> NoReturn:
    """End a component's process with `code` once its job is over: the exit handlers run (pools
    join, logs flush) as on a normal exit, but the interpreter does not tear down the modules one
    by one, which with torch, Lightning and timm loaded costs about 2 s per process here; every
    pipeline step and every billed second of a SageMaker job pays it. Every output is already
    written and closed by then (atomic writes; memory-mapped pages belong to the file)."""
    atexit._run_exitfuncs()  # noqa: SLF001 - what a normal exit runs first; there is no public one
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
