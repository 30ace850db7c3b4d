"""Typed hyperparameters, declared once per component and parsed from SageMaker's strings.

SageMaker passes every value as a string in `hyperparameters.json` (the Python SDK additionally
JSON-encodes them, so `"\"adam\""` and `"0.1"` both occur). A bad name or value fails with a message
that names the parameter, the value and what would have been accepted.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


class HyperparameterError(ValueError):
    """A hyperparameter that is unknown or has a value that cannot be used."""


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"true", "1", "yes", "on"}:
        return True
    if lowered in {"false", "0", "no", "off"}:
        return False
    raise ValueError("expected true or false")


_PARSERS: dict[type, Callable[[str], Any]] = {
    int: lambda s: int(s.strip()),
    float: lambda s: float(s.strip()),
    str: lambda s: s,
    bool: _parse_bool,
}


@dataclass(frozen=True)
class Param:
    """One hyperparameter: its name, type, default, allowed values and a line of help."""

    name: str
    type: type
    default: Any
    help: str
    choices: tuple[Any, ...] | None = None
    min: float | None = None
    max: float | None = None
    optional: bool = False  # default None means "not set"

    def parse(self, raw: Any) -> Any:
        text = _unquote(raw)
        if self.optional and text.strip().lower() in {"", "none", "null"}:
            return None
        try:
            value = _PARSERS[self.type](text)
        except (ValueError, TypeError) as exc:
            raise HyperparameterError(
                f"hyperparameter {self.name}={raw!r} is not a valid {self.type.__name__}"
                f" ({exc}); {self.describe_valid()}"
            ) from None
        if self.choices is not None and value not in self.choices:
            raise HyperparameterError(
                f"hyperparameter {self.name}={raw!r} is not allowed; {self.describe_valid()}"
            )
        if (self.min is not None and value < self.min) or (
            self.max is not None and value > self.max
        ):
            raise HyperparameterError(
                f"hyperparameter {self.name}={raw!r} is out of range; {self.describe_valid()}"
            )
        return value

    def describe_valid(self) -> str:
        if self.choices is not None:
            return "valid choices: " + ", ".join(str(c) for c in self.choices)
        bounds = []
        if self.min is not None:
            bounds.append(f">= {self.min}")
        if self.max is not None:
            bounds.append(f"<= {self.max}")
        return f"expected a {self.type.__name__}" + (f" {' and '.join(bounds)}" if bounds else "")


def _unquote(raw: Any) -> str:
    """Undo the SDK's JSON encoding of strings ("\"adam\"" -> "adam"); numbers pass through."""
    if not isinstance(raw, str):
        return json.dumps(raw) if isinstance(raw, bool) else str(raw)
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        try:
            decoded = json.loads(raw)
        except json.JSONDecodeError:
            return raw
        return decoded if isinstance(decoded, str) else raw
    return raw


@dataclass(frozen=True)
class HyperparameterSpec:
    """All hyperparameters a component accepts."""

    params: tuple[Param, ...]
    # SageMaker and its SDK add their own keys (sagemaker_program, sagemaker_region, ...).
    ignored_prefixes: tuple[str, ...] = field(default=("sagemaker_", "_tuning_objective_metric"))

    def __post_init__(self) -> None:
        for p in self.params:
            if p.default is not None:
                p.parse(p.default)  # a spec whose default is invalid is a programming error

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def parse(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        """Typed values for every declared parameter, defaults filled in."""
        by_name = {p.name: p for p in self.params}
        unknown = [k for k in raw if k not in by_name and not k.startswith(self.ignored_prefixes)]
        if unknown:
            hints = []
            for name in unknown:
                close = difflib.get_close_matches(name, self.names, n=1)
                hints.append(f"{name}" + (f" (did you mean {close[0]}?)" if close else ""))
            raise HyperparameterError(
                "unknown hyperparameter(s): " + ", ".join(hints)
                + "; valid names: " + ", ".join(self.names)
            )
        values = {p.name: p.default for p in self.params}
        for name, value in raw.items():
            if name in by_name:
                values[name] = by_name[name].parse(value)
        return values

    def help_text(self) -> str:
        lines = []
        for p in self.params:
            valid = p.describe_valid()
            lines.append(f"  {p.name} (default {p.default!r}; {valid}): {p.help}")
        return "\n".join(lines)
