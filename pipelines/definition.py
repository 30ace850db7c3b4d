"""Pipeline definitions in YAML: parameters, steps, references, conditions; validated and ordered.

A value may refer to a parameter, `${params.NAME}`, or to an earlier step's output,
`${steps.STEP.outputs.NAME}`. Steps run in an order that respects those references and any
`depends_on`; cycles, unknown references and unknown parameters are refused before anything runs.
A parameter's default may be another parameter (`default: "${params.input_data}"`): its value then,
or a training hyperparameter's (`hyperparameter: epochs`): the training job's own declared default,
so a pipeline and a job started without hyperparameters train alike.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from algorithm.hyperparameters import Hyperparameters
from shared.errors import UserError
from shared.names import check_name
from shared.schema import default_of, fields_of

REFERENCE = re.compile(r"\$\{(params\.[A-Za-z0-9_]+|steps\.[A-Za-z0-9_-]+\.outputs\.[A-Za-z0-9_]+)\}")
JOB_TYPES = ("processing", "training", "transform", "condition", "register", "registered_model",
             "report", "retrain")
COMPONENTS = ("processing", "algorithm", "monitoring", "explainability")
OPERATORS = (">=", ">", "<=", "<", "==", "!=")


class PipelineError(UserError):
    """A pipeline definition or invocation that cannot run; the message says where and why."""


@dataclass
class Step:
    name: str
    job: str
    spec: dict[str, Any]
    component: str | None = None
    mode: str | None = None
    depends_on: list[str] = field(default_factory=list)

    def references(self) -> tuple[set[str], set[str]]:
        """(parameter names, step names) this step's values refer to."""
        params, steps = set(), set()
        for match in REFERENCE.findall(yaml.safe_dump(self.spec)):
            parts = match.split(".")
            (params if parts[0] == "params" else steps).add(parts[1])
        return params, steps

    @property
    def upstream(self) -> set[str]:
        return self.references()[1] | set(self.depends_on)


@dataclass
class Pipeline:
    name: str
    parameters: dict[str, dict[str, Any]]
    steps: dict[str, Step]
    order: list[str]
    source: Path

    def resolve_parameters(self, given: dict[str, str]) -> dict[str, Any]:
        unknown = sorted(set(given) - set(self.parameters))
        if unknown:
            raise PipelineError(f"unknown parameter(s) {', '.join(unknown)} for pipeline"
                                f" {self.name}; it takes: {', '.join(self.parameters)}")
        values = {}
        for name, spec in self.parameters.items():
            if name in given:
                values[name] = given[name]
            elif "default" in spec:
                values[name] = spec["default"]
            else:
                raise PipelineError(f"parameter {name} is required (--param {name}=...)")
        for name, value in values.items():  # a default may be another parameter's value
            if name not in given and isinstance(value, str) and REFERENCE.fullmatch(value):
                values[name] = values[REFERENCE.fullmatch(value).group(1).split(".")[1]]
        return values


def _topological(steps: dict[str, Step]) -> list[str]:
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            cycle = " -> ".join(path[path.index(name):] + [name])
            raise PipelineError(f"steps form a cycle: {cycle}")
        state[name] = "visiting"
        for upstream in sorted(steps[name].upstream):
            visit(upstream, path + [name])
        state[name] = "done"
        order.append(name)

    for name in steps:  # file order breaks ties, so the order is stable and readable
        visit(name, [])
    return order


def _hyperparameter_default(path: Path, name: str, spec: dict[str, Any]) -> Any:
    """The training job's declared default for the hyperparameter `spec` names."""
    declared = {f.name: f for f, _ in fields_of(Hyperparameters)}
    wanted = spec["hyperparameter"]
    if wanted not in declared:
        raise PipelineError(f"{path}: parameter {name}: {wanted!r} is not a training"
                            f" hyperparameter; they are: {', '.join(declared)}")
    if "default" in spec:
        raise PipelineError(f"{path}: parameter {name} has both a default and a hyperparameter")
    return default_of(declared[wanted])


def load_pipeline(path: Path) -> Pipeline:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise PipelineError(f"cannot read pipeline {path}: {exc}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("steps"), list) or not raw["steps"]:
        raise PipelineError(f"{path}: expected a mapping with a non-empty list of steps")
    parameters = raw.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise PipelineError(f"{path}: parameters must be a mapping")
    parameters = {k: (v if isinstance(v, dict) else {"default": v}) for k, v in parameters.items()}
    for name, spec in parameters.items():
        if "hyperparameter" in spec:
            spec["default"] = _hyperparameter_default(path, name, spec)
        default = spec.get("default")
        match = REFERENCE.fullmatch(default) if isinstance(default, str) else None
        target = match.group(1).split(".") if match else None
        if match and (target[0] != "params" or target[1] not in parameters
                      or isinstance(parameters[target[1]].get("default"), str)
                      and REFERENCE.fullmatch(parameters[target[1]]["default"])):
            raise PipelineError(f"{path}: parameter {name}'s default {default} must name another"
                                " parameter, one whose own default is a value")
    pipeline_name = check_name(str(raw.get("name", path.stem)), f"{path}: pipeline name")
    steps: dict[str, Step] = {}
    for entry in raw["steps"]:
        if not isinstance(entry, dict) or "name" not in entry:
            raise PipelineError(f"{path}: every step needs a name")
        name = check_name(entry["name"], f"{path}: step name")  # it names the step's run folder
        if name in steps:
            raise PipelineError(f"{path}: two steps are called {name}")
        job = entry.get("job")
        if job not in JOB_TYPES:
            raise PipelineError(f"step {name}: job {job!r} is not one of {', '.join(JOB_TYPES)}")
        component = entry.get("component")
        if job in ("processing", "training") and component not in COMPONENTS:
            raise PipelineError(f"step {name}: component {component!r} is not one of"
                                f" {', '.join(COMPONENTS)}")
        mode = entry.get("mode", "train" if job == "training" else None)
        modes = ("train", "serve", "evaluate") if component == "algorithm" else ("train", "serve")
        if job == "processing" and mode not in modes:
            raise PipelineError(f"step {name}: mode must be {' or '.join(modes)}")
        if job == "training" and mode != "train":
            raise PipelineError(f"step {name}: a training job runs mode train")
        depends = entry.get("depends_on") or []
        spec = {k: v for k, v in entry.items()
                if k not in ("name", "job", "component", "mode", "depends_on")}
        check_folder_names(name, spec)
        steps[name] = Step(name, job, spec, component, mode, [str(d) for d in depends])
    for step in steps.values():
        params, upstream = step.references()
        missing_params = sorted(params - set(parameters))
        if missing_params:
            raise PipelineError(f"step {step.name} refers to unknown parameter(s)"
                                f" {', '.join(missing_params)}")
        missing_steps = sorted((upstream | set(step.depends_on)) - set(steps))
        if missing_steps:
            raise PipelineError(f"step {step.name} refers to unknown step(s)"
                                f" {', '.join(missing_steps)}")
    return Pipeline(pipeline_name, parameters, steps, _topological(steps), path)


def check_folder_names(step: str, spec: dict[str, Any]) -> None:
    """Input and output names become folders in the step's /opt/ml: they follow the name rule."""
    inputs, outputs = spec.get("inputs") or {}, spec.get("outputs") or []
    if not isinstance(inputs, dict) or not isinstance(outputs, list):
        raise PipelineError(f"step {step}: inputs must be a mapping and outputs a list")
    for name in inputs:
        check_name(name, f"step {step}: input name")
    for name in outputs:
        check_name(name, f"step {step}: output name")


def substitute(value: Any, params: dict[str, Any], outputs: dict[str, dict[str, Path]]) -> Any:
    """Replace references in strings (recursively in lists and mappings).

    A string that is exactly one reference takes the referenced value itself (a path, a number,
    None); references inside longer strings are formatted in.
    """
    if isinstance(value, dict):
        return {k: substitute(v, params, outputs) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, params, outputs) for v in value]
    if not isinstance(value, str):
        return value

    def lookup(ref: str) -> Any:
        parts = ref.split(".")
        if parts[0] == "params":
            return params[parts[1]]
        step, output = parts[1], parts[3]
        if output not in outputs.get(step, {}):
            raise PipelineError(f"step {step} has no output {output!r}; it has:"
                                f" {', '.join(outputs.get(step, {})) or 'none'}")
        return outputs[step][output]

    whole = REFERENCE.fullmatch(value)
    if whole:
        return lookup(whole.group(1))
    return REFERENCE.sub(lambda m: str(lookup(m.group(1))), value)
