"""Declared fields with their rules, checked the same way wherever values come from outside.

A frozen dataclass declares each field with `setting(...)`: its type (the annotation), default, a
line of help and its constraints (bounds, choices, lengths). One set of checks then applies them
to every source of values:

- `from_json(cls, data)`: a JSON object read from a file we did not write ourselves (model.json,
  detector.json). Types are strict (a bool is not an integer, a string is not a number), every
  float must be finite, nested dataclasses are checked in turn, unknown keys are ignored (newer
  writers may add some).
- `from_strings(cls, values)`: text, as SageMaker passes hyperparameters and a shell passes flags.

Every message names the field and says what would have been accepted, so a rule written once
(say, "finite") holds for every file and flag that declares it. Only the standard library is
imported here: a command line is checked before any heavy import.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import math
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from shared.errors import UserError

T = TypeVar("T")
MISSING = dataclasses.MISSING
NONE_WORDS = {"", "none", "null"}
TRUE_WORDS = {"true", "1", "yes", "on"}
FALSE_WORDS = {"false", "0", "no", "off"}


class SchemaError(UserError):
    """A value that breaks its field's declared rules."""


@dataclasses.dataclass(frozen=True)
class Rule:
    """The constraints of one field. Bounds apply to a number, or to each number of a list."""

    help: str = ""
    min: float | None = None  # inclusive
    max: float | None = None  # inclusive
    above: float | None = None  # exclusive lower bound
    below: float | None = None  # exclusive upper bound
    choices: tuple[Any, ...] | None = None
    length: int | None = None  # exact length of a list
    min_length: int | None = None  # of a string or a list
    unique: bool = False  # items of a list
    parse: Callable[[str], Any] | None = None  # text to value, for a type `from_strings` can't parse
    metavar: str | None = None
    tunable: bool = False  # a hyperparameter tuner may search it (within min..max or choices)

    @property
    def bounded(self) -> bool:
        return not (self.min is None and self.max is None and self.above is None
                    and self.below is None)


def setting(default: Any = MISSING, *, help: str = "", default_factory: Any = MISSING,
            **rules: Any) -> Any:
    """A dataclass field with its rule (see `Rule`); without a default, the field is required."""
    return dataclasses.field(default=default, default_factory=default_factory,
                             metadata={"rule": Rule(help=help, **rules)})


def rule_of(field: dataclasses.Field) -> Rule:
    return field.metadata.get("rule", Rule())


@functools.cache
def fields_of(cls: type) -> tuple[tuple[dataclasses.Field, Any], ...]:
    """(field, resolved type) for every field of a dataclass (resolved once per class: manifests
    check every line against it)."""
    hints = typing.get_type_hints(cls)
    return tuple((f, hints[f.name]) for f in dataclasses.fields(cls))


def default_of(field: dataclasses.Field) -> Any:
    if field.default is not MISSING:
        return field.default
    if field.default_factory is not MISSING:
        return field.default_factory()
    return MISSING


# ---- describing what is accepted -------------------------------------------------------------

@functools.cache  # called for every value checked: a manifest's every field on every line
def optional_type(tp: Any) -> tuple[Any, bool]:
    """(the type without None, whether None is allowed)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return (args[0] if len(args) == 1 else Any), len(args) < len(typing.get_args(tp))
    return tp, False


_NAMES = {bool: ("true or false", "true/false values"), int: ("an integer", "integers"),
          float: ("a finite number", "finite numbers"), str: ("a string", "strings"),
          Path: ("a path", "paths")}


def type_name(tp: Any) -> str:
    """Short name for help texts: integer, number, string, ..."""
    tp, _ = optional_type(tp)
    return {bool: "true/false", int: "integer", float: "number", str: "string", Path: "path"}.get(
        tp, getattr(tp, "__name__", "value"))


def _bounds(rule: Rule) -> str:
    if rule.min is not None and rule.max is not None:
        return f" between {rule.min:g} and {rule.max:g}"
    if rule.above is not None and rule.below is not None:
        return f" strictly between {rule.above:g} and {rule.below:g}"
    parts = []
    if rule.above is not None:
        parts.append(f"above {rule.above:g}")
    if rule.below is not None:
        parts.append(f"below {rule.below:g}")
    if rule.min is not None:
        parts.append(f">= {rule.min:g}")
    if rule.max is not None:
        parts.append(f"<= {rule.max:g}")
    return (" " + " and ".join(parts)) if parts else ""


def describe(tp: Any, rule: Rule) -> str:
    """What a field accepts, in words: 'a list of 3 finite numbers above 0'."""
    tp, optional = optional_type(tp)
    if rule.choices is not None:
        text = "one of " + ", ".join(str(c) for c in rule.choices)
    elif typing.get_origin(tp) is list:
        (item,) = typing.get_args(tp) or (Any,)
        count = (f"{rule.length} " if rule.length is not None else
                 "non-empty " if rule.min_length == 1 else "")
        noun = _NAMES.get(item, (None, "values"))[1]
        text = (f"a list of {count}{noun}" if not count.startswith("non") else
                f"a non-empty list of {noun}") + _bounds(rule)
    elif typing.get_origin(tp) is dict or tp is dict:
        text = "an object"
    elif dataclasses.is_dataclass(tp):
        text = "an object"
    elif tp is str and rule.min_length:
        text = "a non-empty string"
    else:
        text = _NAMES.get(tp, ("a value",))[0] + _bounds(rule)
    return text + (" (or none)" if optional else "")


# ---- checking ------------------------------------------------------------------------------

def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _type_ok(tp: Any, value: Any) -> bool:
    if tp is Any:
        return True
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return _is_int(value)
    if tp is float:
        return _is_number(value)
    if tp in (str, Path):
        return isinstance(value, str | Path)
    origin = typing.get_origin(tp)
    if origin is list:
        (item,) = typing.get_args(tp) or (Any,)
        return isinstance(value, list) and all(_type_ok(item, v) for v in value)
    if origin is dict or tp is dict:
        args = typing.get_args(tp)
        item = args[1] if len(args) == 2 else Any
        return isinstance(value, dict) and all(isinstance(k, str) and _type_ok(item, v)
                                               for k, v in value.items())
    if dataclasses.is_dataclass(tp):
        return isinstance(value, dict | tp)
    raise TypeError(f"schema: unsupported field type {tp!r}")


def _in_bounds(rule: Rule, number: float) -> bool:
    return not ((rule.min is not None and number < rule.min)
                or (rule.max is not None and number > rule.max)
                or (rule.above is not None and number <= rule.above)
                or (rule.below is not None and number >= rule.below))


def check_value(name: str, tp: Any, rule: Rule, value: Any) -> Any:
    """`value` if it has the field's type and keeps its rule; else SchemaError naming the field."""
    inner, optional = optional_type(tp)
    if value is None:
        if optional:
            return None
        raise SchemaError(f"{name} must be {describe(tp, rule)}")
    if not _type_ok(inner, value):
        raise SchemaError(f"{name} must be {describe(tp, rule)}")
    if isinstance(value, dict) and dataclasses.is_dataclass(inner):
        return from_json(inner, value, source=name)
    if inner is Path:
        value = Path(value)
    if rule.choices is not None and value not in rule.choices:
        raise SchemaError(f"{name} must be {describe(tp, rule)}, not {value!r}")
    if rule.bounded:
        numbers = value if isinstance(value, list) else [value]
        if any(_is_number(v) and not _in_bounds(rule, v) for v in numbers):
            raise SchemaError(f"{name} must be {describe(tp, rule)}")
    if isinstance(value, list | str):
        if (rule.length is not None and len(value) != rule.length) or (
                rule.min_length is not None and len(value) < rule.min_length):
            raise SchemaError(f"{name} must be {describe(tp, rule)}")
    if rule.unique and len(set(value)) != len(value):
        raise SchemaError(f"{name} has duplicates")
    return value


@functools.cache
def _json_fields(cls: type) -> tuple[tuple[str, Any, Rule, bool], ...]:
    """(name, type, rule, required) per field, worked out once per class for `from_json`."""
    return tuple((f.name, tp, rule_of(f), default_of(f) is MISSING) for f, tp in fields_of(cls))


def from_json(cls: type[T], data: Any, source: str = "") -> T:
    """An instance of dataclass `cls` from a JSON object, every field checked against its rule."""
    where = f"{source}: " if source else ""
    if not isinstance(data, dict):
        raise SchemaError(f"{where}expected a JSON object")
    values = {}
    for name, tp, rule, required in _json_fields(cls):
        if name in data:
            try:
                values[name] = check_value(name, tp, rule, data[name])
            except SchemaError as exc:
                raise SchemaError(f"{where}{exc}") from None
        elif required:
            raise SchemaError(f"{where}{name} is missing; it must be {describe(tp, rule)}")
    try:
        return cls(**values)
    except SchemaError as exc:  # the class's own checks (__post_init__) across fields
        raise SchemaError(f"{where}{exc}") from None


def to_json(obj: Any) -> Any:
    """A dataclass (or what it holds) as plain JSON types."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_json(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, list | tuple):
        return [to_json(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_json(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


# ---- values given as text: flags and SageMaker hyperparameters ------------------------------

def unquote(raw: Any) -> str:
    """Text of a value; undoes the SageMaker SDK's JSON encoding of strings ("\\"adam\\"" -> adam)."""
    if not isinstance(raw, str):
        return json.dumps(raw) if isinstance(raw, bool) else str(raw)
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        try:
            decoded = json.loads(raw)
        except json.JSONDecodeError:
            return raw
        return decoded if isinstance(decoded, str) else raw
    return raw


def _parse_text(tp: Any, text: str) -> Any:
    if tp is bool:
        lowered = text.strip().lower()
        if lowered in TRUE_WORDS | FALSE_WORDS:
            return lowered in TRUE_WORDS
        raise ValueError("expected true or false")
    if tp is int:
        return int(text.strip())
    if tp is float:
        value = float(text.strip())
        if not math.isfinite(value):
            raise ValueError("not a finite number")
        return value
    if tp is Path:
        return Path(text)
    if tp is str:
        return text
    raise TypeError(f"schema: no text parser for {tp!r}; give the field a `parse` rule")


def parse_text(label: str, field: dataclasses.Field, tp: Any, raw: Any) -> Any:
    """One value from text, checked against the field's rule; errors name `label` and the value."""
    rule = rule_of(field)
    inner, optional = optional_type(tp)
    text = unquote(raw)
    if optional and not rule.parse and text.strip().lower() in NONE_WORDS:
        return None
    try:
        value = rule.parse(text) if rule.parse else _parse_text(inner, text)
    except (ValueError, TypeError) as exc:
        raise SchemaError(f"{label}={raw!r} is not a valid {type_name(tp)} ({exc});"
                          f" expected {describe(tp, rule)}") from None
    if rule.choices is not None and value not in rule.choices:
        raise SchemaError(f"{label}={raw!r} is not allowed; valid choices: "
                          + ", ".join(str(c) for c in rule.choices))
    try:
        return check_value(label, tp, rule, value)
    except SchemaError:
        raise SchemaError(f"{label}={raw!r} is out of range; expected {describe(tp, rule)}") from None


def from_strings(cls: type[T], values: Mapping[str, Any], *, what: str = "setting",
                 ignored_prefixes: tuple[str, ...] = ()) -> T:
    """An instance of `cls` from name -> text; unknown names are refused with a suggestion."""
    fields = {f.name: (f, tp) for f, tp in fields_of(cls)}
    unknown = [k for k in values if k not in fields and not k.startswith(ignored_prefixes)]
    if unknown:
        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name, list(fields), n=1)
            hints.append(name + (f" (did you mean {close[0]}?)" if close else ""))
        raise SchemaError(f"unknown {what}(s): {', '.join(hints)}; valid names: {', '.join(fields)}")
    parsed = {name: parse_text(f"{what} {name}", *fields[name], raw)
              for name, raw in values.items() if name in fields}
    return cls(**parsed)


def help_line(field: dataclasses.Field, tp: Any) -> str:
    """'passes over the data (integer, default 10, between 1 and 10000)'."""
    rule = rule_of(field)
    default = default_of(field)
    details = [type_name(tp)]
    if default is MISSING:
        details.append("required")
    elif "default" not in rule.help:  # unless the help says what happens by default
        shown = "none" if default is None else str(default).lower() if isinstance(default, bool) \
            else default
        details.append(f"default {shown}")
    if rule.choices is not None:
        details.append("one of " + ", ".join(str(c) for c in rule.choices))
    elif bounds := _bounds(rule).strip():
        details.append(bounds)
    return f"{rule.help} ({', '.join(details)})".strip()


def check_defaults(cls: type) -> None:
    """Every declared default keeps its own rule (a violation is a programming error)."""
    for field, tp in fields_of(cls):
        default = default_of(field)
        if default is not MISSING and not (rule_of(field).parse and default is None):
            check_value(field.name, tp, dataclasses.replace(rule_of(field), parse=None), default)
