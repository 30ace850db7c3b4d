"""A hyperparameter search space: which tunable hyperparameters a tuner searches, and over what.

The file is YAML, one entry per hyperparameter, each a range or a list of choices:

    learning_rate: {low: 1.0e-4, high: 1.0e-2, log: true}   # log-uniform between low and high
    label_smoothing: {low: 0.0, high: 0.2}                  # uniform
    batch_size: {choices: [16, 32, 64]}
    optimizer: {choices: [adamw, sgd]}

Only hyperparameters the training job declares tunable (algorithm/hyperparameters.py) may appear;
a range lies within the declared bounds (an integer hyperparameter's range holds integers) and
choices are among the declared values; a log range starts above 0. The same space drives the local
Optuna study (`python -m pipelines tune`) and the exported SageMaker HyperparameterTuner
(`python -m pipelines export --tuning`). Nothing here imports Optuna or the SageMaker SDK.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from algorithm.hyperparameters import Hyperparameters
from algorithm.metrics import TUNING_OBJECTIVES
from pipelines.definition import Pipeline, PipelineError, Step
from shared.errors import UserError
from shared.schema import SchemaError, describe, fields_of, optional_type, parse_text, rule_of

DEFAULT = Path(__file__).resolve().parent / "search-space.yaml"
FIELDS = {f.name: (f, tp) for f, tp in fields_of(Hyperparameters)}
TUNABLE = tuple(name for name, (f, _) in FIELDS.items() if rule_of(f).tunable)
OBJECTIVE = TUNING_OBJECTIVES[0]  # validation:nll, minimised: locally and on SageMaker
MINIMISED = OBJECTIVE["Type"] == "Minimize"


class SearchSpaceError(UserError):
    """A search space that cannot be searched; the message names what is valid."""


@dataclass(frozen=True)
class Range:
    """A number between `low` and `high` (integers for an integer hyperparameter)."""

    low: float
    high: float
    log: bool = False
    integer: bool = False

    def contains(self, value: Any) -> bool:
        return isinstance(value, int | float) and not isinstance(value, bool) \
            and self.low <= value <= self.high and (not self.integer or float(value).is_integer())

    def as_json(self) -> dict[str, Any]:
        return {"low": self.low, "high": self.high, "log": self.log}


@dataclass(frozen=True)
class Choices:
    values: tuple[Any, ...]

    def contains(self, value: Any) -> bool:
        return any(value == v and type(value) is type(v) for v in self.values)

    def as_json(self) -> dict[str, Any]:
        return {"choices": list(self.values)}


Dimension = Range | Choices


def tuned_step(pipeline: Pipeline) -> Step:
    """The step a tuner searches over: the pipeline's one training step."""
    found = [s for s in pipeline.steps.values() if s.job == "training"]
    if len(found) != 1:
        raise PipelineError(f"{pipeline.source}: tuning needs a pipeline with one training step;"
                            f" it has {len(found)}")
    return found[0]


def tunable_summary() -> str:
    """Every tunable hyperparameter with what it accepts: the end of each error message."""
    return "; ".join(f"{name} ({describe(FIELDS[name][1], rule_of(FIELDS[name][0]))})"
                     for name in TUNABLE)


def _check_name(name: Any, source: str) -> None:
    if name in TUNABLE:
        return
    if name in FIELDS:
        raise SearchSpaceError(f"{source}: {name} is not tunable; tunable hyperparameters:"
                               f" {tunable_summary()}")
    close = difflib.get_close_matches(str(name), list(FIELDS), n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    raise SearchSpaceError(f"{source}: {name!r} is not a hyperparameter of the training job{hint};"
                           f" tunable hyperparameters: {tunable_summary()}")


def parse_value(name: str, raw: Any, source: str, key: str = "") -> Any:
    """One value of hyperparameter `name` (YAML value or text), checked against its declaration;
    `key` (low, high, choice) says which in an error."""
    field, tp = FIELDS[name]
    try:
        return parse_text(f"{name} {key}".strip(), field, tp, raw)
    except SchemaError as exc:
        raise SearchSpaceError(f"{source}: {exc}") from None


def dimension(name: str, entry: Any, source: str) -> Dimension:
    """One hyperparameter's entry, checked against the training job's declaration of it."""
    _check_name(name, source)
    field, tp = FIELDS[name]
    kind, _ = optional_type(tp)
    where = f"{source}: {name}"
    numeric = kind in (int, float) and rule_of(field).choices is None
    usage = ("{low: ..., high: ...[, log: true]} or {choices: [...]}" if numeric
             else "{choices: [...]}")
    if not isinstance(entry, dict) or set(entry) not in ({"choices"}, {"low", "high"},
                                                         {"low", "high", "log"}):
        raise SearchSpaceError(f"{where}: expected {usage}; it accepts"
                               f" {describe(tp, rule_of(field))}")
    if "choices" in entry:
        raw = entry["choices"]
        if not isinstance(raw, list) or not raw:
            raise SearchSpaceError(f"{where}: choices must be a non-empty list")
        values = tuple(parse_value(name, v, source, "choice") for v in raw)
        if len(set(values)) != len(values):
            raise SearchSpaceError(f"{where}: choices has duplicates: {raw}")
        return Choices(values)
    if not numeric:
        raise SearchSpaceError(f"{where}: expected {usage}; it accepts"
                               f" {describe(tp, rule_of(field))}")
    low, high = (parse_value(name, entry[k], source, k) for k in ("low", "high"))
    log = entry.get("log", False)
    if not isinstance(log, bool):
        raise SearchSpaceError(f"{where}: log must be true or false, not {log!r}")
    if not low < high:
        raise SearchSpaceError(f"{where}: low ({low}) must be below high ({high})")
    if log and low <= 0:
        raise SearchSpaceError(f"{where}: a log range must start above 0, not at {low}")
    return Range(low, high, log, kind is int)


def load_search_space(path: Path | None = None) -> dict[str, Dimension]:
    """The search space in `path` (default: pipelines/search-space.yaml), every entry checked."""
    path = Path(path or DEFAULT)
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise SearchSpaceError(f"cannot read the search space {path}: {exc}") from None
    if not isinstance(raw, dict) or not raw:
        raise SearchSpaceError(f"{path}: expected a mapping of hyperparameter names to ranges or"
                               f" choices; tunable hyperparameters: {tunable_summary()}")
    return {str(name): dimension(name, entry, str(path)) for name, entry in raw.items()}


def space_as_json(space: dict[str, Dimension]) -> dict[str, Any]:
    return {name: d.as_json() for name, d in space.items()}


def parse_assignment(text: str, space: dict[str, Dimension]) -> dict[str, Any]:
    """`NAME=VALUE[,NAME=VALUE...]` (a trial to try, `--enqueue`): values inside the space."""
    values = {}
    for part in text.split(","):
        name, sep, raw = part.partition("=")
        name = name.strip()
        if not sep or name not in space:
            raise SearchSpaceError(f"--enqueue {text!r}: expected NAME=VALUE[,NAME=VALUE...] with"
                                   f" names from the search space: {', '.join(space)}")
        if name in values:
            raise SearchSpaceError(f"--enqueue {text!r}: {name} is given twice")
        value = parse_value(name, raw.strip(), "--enqueue")
        if not space[name].contains(value):
            raise SearchSpaceError(f"--enqueue {name}={raw}: outside the search space"
                                   f" {space[name].as_json()}")
        values[name] = value
    return values
