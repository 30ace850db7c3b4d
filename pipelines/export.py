"""A pipeline YAML as a SageMaker pipeline definition, built with the SageMaker Python SDK (2.x).

The YAML files stay the single source: the local runner and this export read the same
definitions. Each step kind becomes its SageMaker counterpart, on the images of `image-uris.json`:

- `processing` -> ProcessingStep: a `Processor` on the component's image with its own entrypoint
  spelled out, the mode and `args` as container arguments, each input at
  /opt/ml/processing/input/<name> and each output uploaded from /opt/ml/processing/output/<name>
  to `<s3>/<pipeline>/<execution id>/<step>/<name>`.
- `training` -> TrainingStep: an `Estimator` on the algorithm image with the YAML's
  hyperparameters, the metric definitions over its log lines (`algorithm.metrics`), a checkpoint
  S3 URI, and managed spot with `--spot`. With `--tuning [SEARCH_SPACE]` the pipeline's training
  step is a TuningStep instead: a `HyperparameterTuner` over that estimator searching the same
  space as `python -m pipelines tune` (pipelines/search_space.py: ContinuousParameter,
  IntegerParameter, CategoricalParameter), minimising validation:nll (the last value a job
  logs), Bayesian, with SageMaker's automatic early stopping (a median rule, like the local
  pruner); its `model` is the best training job's (`<output>/<best job>/output/model.tar.gz`, what
  `TuningStep.get_top_model_s3_uri(top_k=0)` names). Its jobs get no checkpoint URI: one URI would
  be shared by every job of the tuning job. An inlined retraining keeps its TrainingStep.
- `transform` -> a ModelStep creating the model, then a TransformStep over the processed shards
  (`shard-*`: the data set's manifest is not a request), one shard per request, content and
  accept types as locally.
- `condition` -> ConditionStep reading a PropertyFile of the step that wrote the file; the steps
  after it are its `if_steps`, and nothing runs on the other branch, as locally.
- `register` -> ModelStep registering a model package (the group is `model_name`, the approval
  status the YAML's) with the evaluation file as its model statistics, and the drift detector and
  explanations as customer metadata.
- `registered_model` -> no step: its model (and detector) become pipeline parameters.
  `python -m pipelines start` fills them with the group's latest approved version; an optional one
  (the training pipeline's champion) is left out unless given a value.
- `retrain` -> the training pipeline's steps inlined (prefixed `retrain-`) under a ConditionStep on
  the parameter `retrain_allowed`, inside the drift condition's branch: the guard's verdict, which
  `start` computes from the model package group (no retraining while a version retrained from the
  model in use is pending or rejected).
- `report` -> nothing: the runner's own summary page (SageMaker Studio shows each step's outputs).

Pipeline parameters become SageMaker pipeline parameters (typed by their YAML default) when a step
uses them. A parameter without a value (a null default, not given with `--param`) leaves out the
inputs and hyperparameters that name it: S3 has no "no input".

`Target.local` exports for the SDK's local mode (tests/images/test_sagemaker_local.py): without
the register step and the checkpoint URI, which local mode refuses.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from algorithm.metrics import METRIC_DEFINITIONS
from algorithm.serve.content_types import NPY as SHARDS  # a processed data set's shards
from pipelines.definition import REFERENCE, Pipeline, PipelineError, Step, load_pipeline
from pipelines.search_space import OBJECTIVE, Choices, Dimension, tuned_step
from shared.schema import unquote

LOCAL_ONLY = {"report"}
RETRAIN_PREFIX = "retrain-"
# S3DataDistributionType, as the local runner's jobs name them (pipelines/jobs.py, which this
# module does not import: the export's environment lacks the runner's dependencies)
REPLICATED, SHARDED = "FullyReplicated", "ShardedByS3Key"
DEFAULT_INSTANCE_TYPE = "ml.m5.xlarge"  # a step whose YAML names none
ECR_REGION = re.compile(r"^\d+\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?/")


@dataclass(frozen=True)
class Tuning:
    """`--tuning`: the search space, and how many training jobs in all and at once."""

    space: dict[str, Dimension]
    max_jobs: int = 20
    max_parallel_jobs: int = 2

    def __post_init__(self) -> None:
        if not 1 <= self.max_parallel_jobs <= self.max_jobs:
            raise PipelineError(f"--tuning-jobs {self.max_jobs} --tuning-parallel"
                                f" {self.max_parallel_jobs}: expected 1 <= parallel <= jobs")

    def ranges(self) -> dict[str, Any]:
        from sagemaker.tuner import CategoricalParameter, ContinuousParameter, IntegerParameter

        ranges = {}
        for name, d in self.space.items():
            if isinstance(d, Choices):
                ranges[name] = CategoricalParameter([unquote(v) for v in d.values])
            else:
                kind = IntegerParameter if d.integer else ContinuousParameter
                ranges[name] = kind(d.low, d.high,
                                    scaling_type="Logarithmic" if d.log else "Linear")
        return ranges


@dataclass(frozen=True)
class Target:
    """Where the exported pipeline runs: images, role, S3 prefix, region, and export options."""

    images: dict[str, str]
    role: str
    s3: str
    region: str
    params: dict[str, str] = field(default_factory=dict)
    spot: bool = False
    max_run_s: int = 24 * 3600
    local: bool = False  # for the SDK's local mode: outputs may go to a file:// folder
    tuning: Tuning | None = None  # the training step as a TuningStep

    def __post_init__(self) -> None:
        if self.local and self.tuning:
            raise PipelineError("--tuning: the SDK's local mode runs no tuning jobs")
        schemes = ("s3://", "file://") if self.local else ("s3://",)
        if not self.s3.startswith(schemes) or self.s3.rstrip("/") in schemes:
            raise PipelineError(f"--s3 {self.s3!r}: expected s3://bucket[/prefix]")
        if not re.fullmatch(r"arn:aws[a-z-]*:iam::\d{12}:role/\S+", self.role):
            raise PipelineError(f"--role {self.role!r}: expected an IAM role ARN,"
                                " arn:aws:iam::<account>:role/<name>")


def region_of(images: dict[str, str], given: str | None) -> str:
    """The region: given, else the ECR images', else AWS_DEFAULT_REGION/AWS_REGION."""
    if given:
        return given
    regions = {m.group(1) for uri in images.values() if (m := ECR_REGION.match(uri))}
    if len(regions) == 1:
        return regions.pop()
    env = os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION")
    if env:
        return env
    raise PipelineError("no region: pass --region (the images are not in one ECR region and"
                        " AWS_DEFAULT_REGION is not set)")


@dataclass
class Node:
    """One exported step before it is built: its name, what it waits for, and how to build it."""

    name: str
    upstream: set[str]
    build: Callable[[], Any]  # -> an SDK step
    condition: bool = False
    after: set[str] = field(default_factory=set)  # the YAML's depends_on


class Absent:
    """The value of a parameter that has none at export time."""


ABSENT = Absent()


class Scope:
    """How one pipeline's references read: its parameters and its steps' outputs.

    The top-level pipeline's parameters are SageMaker parameters; an inlined pipeline's take the
    values its `retrain` step maps to them, else their YAML defaults.
    """

    def __init__(self, exporter: Exporter, pipeline: Pipeline, prefix: str = "",
                 mapped: dict[str, Any] | None = None, parent: Scope | None = None) -> None:
        self.exporter, self.pipeline, self.prefix = exporter, pipeline, prefix
        self.mapped, self.parent = mapped, parent  # an inlined pipeline's: its YAML values
        self.outputs: dict[str, dict[str, Any]] = {}

    def param(self, name: str) -> Any:
        spec = self.pipeline.parameters[name]
        default = spec.get("default")
        if self.mapped is not None:  # an inlined pipeline
            raw = self.mapped.get(name)
            value = ABSENT if raw is None else self.parent.value(raw)
            if value is ABSENT or value is None:
                value = self.value(default) if isinstance(default, str) else default
            return ABSENT if value is None else value
        return self.exporter.parameter(name, spec)

    def value(self, raw: Any) -> Any:
        """A YAML value as the SDK's: parameters, step properties, Join for formatted strings."""
        if isinstance(raw, dict):
            return {k: self.value(v) for k, v in raw.items()}
        if isinstance(raw, list):
            return [self.value(v) for v in raw]
        if not isinstance(raw, str) or not REFERENCE.search(raw):
            return raw
        whole = REFERENCE.fullmatch(raw)
        if whole:
            return self.lookup(whole.group(1))
        from sagemaker.workflow.functions import Join

        parts: list[Any] = []
        position = 0
        for match in REFERENCE.finditer(raw):
            parts += [raw[position:match.start()], self.lookup(match.group(1))]
            position = match.end()
        parts.append(raw[position:])
        if any(p is ABSENT for p in parts):
            return ABSENT
        return Join(on="", values=[as_string(p) for p in parts if p != ""])

    def lookup(self, ref: str) -> Any:
        parts = ref.split(".")
        if parts[0] == "params":
            return self.param(parts[1])
        step, output = parts[1], parts[3]
        produced = self.outputs.get(step)
        if produced is None:
            raise PipelineError(f"{self.pipeline.source.name}: step {step} has no outputs the"
                                " export can refer to")
        if output not in produced:
            raise PipelineError(f"step {step} has no output {output!r}; it has:"
                                f" {', '.join(produced) or 'none'}")
        return resolved(produced[output])


def as_string(value: Any) -> Any:
    """A value where SageMaker takes strings (container arguments, hyperparameters)."""
    from sagemaker.workflow.entities import PipelineVariable
    from sagemaker.workflow.parameters import Parameter, ParameterTypeEnum

    if isinstance(value, Parameter) and value.parameter_type != ParameterTypeEnum.STRING:
        return value.to_string()
    if isinstance(value, bool):
        return str(value).lower()
    return value if isinstance(value, PipelineVariable) else str(value)


class Exporter:
    def __init__(self, pipeline: Pipeline, target: Target, session: Any) -> None:
        self.pipeline, self.target, self.session = pipeline, target, session
        unknown = sorted(set(target.params) - set(pipeline.parameters))
        if unknown:
            raise PipelineError(f"unknown parameter(s) {', '.join(unknown)} for pipeline"
                                f" {pipeline.name}; it takes: {', '.join(pipeline.parameters)}")
        if target.tuning:
            tuned_step(pipeline)  # the one training step a tuner searches over
        self.parameters: dict[str, Any] = {}
        self.nodes: dict[str, Node] = {}
        self.property_files: dict[str, list[Any]] = {}  # step -> its PropertyFiles
        self.built: dict[str, Any] = {}
        self.left_out: list[str] = []

    # -- parameters ---------------------------------------------------------------------------
    def parameter(self, name: str, spec: dict[str, Any], required: bool = False) -> Any:
        """The SageMaker parameter for a YAML parameter (ABSENT when it has no value)."""
        if name in self.parameters:
            return self.parameters[name]
        from sagemaker.workflow.parameters import (
            ParameterBoolean,
            ParameterFloat,
            ParameterInteger,
            ParameterString,
        )

        default = spec.get("default")
        given = self.target.params.get(name)
        if given is None and isinstance(default, str) and REFERENCE.fullmatch(default):
            # the default is another parameter's value: the same parameter, unless given
            other = REFERENCE.fullmatch(default).group(1).split(".")[1]
            return self.parameter(other, self.pipeline.parameters[other], required)
        if "default" in spec and default is None and given is None and not required:
            return ABSENT
        kind = {bool: ParameterBoolean, int: ParameterInteger, float: ParameterFloat}.get(
            type(default), ParameterString)
        value = default if given is None else convert(name, given, kind)
        parameter = kind(name=name, default_value=value) if value is not None else kind(name=name)
        self.parameters[name] = parameter
        return parameter

    # -- the graph ----------------------------------------------------------------------------
    def add_pipeline(self, scope: Scope, extra_upstream: set[str]) -> None:
        for name in scope.pipeline.order:
            step = scope.pipeline.steps[name]
            upstream = {scope.prefix + u for u in step.upstream} | extra_upstream
            self.add_step(scope, step, upstream)
            if scope.prefix + name in self.nodes:
                self.nodes[scope.prefix + name].after = {scope.prefix + d for d in step.depends_on}

    def add_step(self, scope: Scope, step: Step, upstream: set[str]) -> None:
        name = scope.prefix + step.name
        handler = getattr(self, f"_{step.job}")
        handler(scope, step, name, upstream)

    def node(self, name: str, upstream: set[str], build: Callable[[], Any],
             condition: bool = False) -> None:
        upstream = {u for u in upstream if u in self.nodes}  # left-out steps are no dependency
        self.nodes[name] = Node(name, upstream, build, condition)

    def depends(self, name: str) -> list[str]:
        """A step's DependsOn: the YAML's depends_on, less conditions (a step after a condition is
        in its branch) and left-out steps; the steps it reads properties of are implied."""
        return sorted(u for u in self.nodes[name].after
                      if u in self.nodes and not self.nodes[u].condition)

    # -- step kinds ---------------------------------------------------------------------------
    def _output_uri(self, step: str, *output: Any) -> Any:
        """`<s3>/<pipeline>/<execution id>/<step>[/<output>...]`: one place per run and step."""
        from sagemaker.workflow.execution_variables import ExecutionVariables
        from sagemaker.workflow.functions import Join

        parts = [self.target.s3.rstrip("/"), self.pipeline.name,
                 ExecutionVariables.PIPELINE_EXECUTION_ID, step, *output]
        return Join(on="/", values=parts)

    def _instances(self, scope: Scope, spec: dict[str, Any], kind: str) -> tuple[Any, Any]:
        count = scope.value(spec.get("instances", 1))
        itype = scope.value(spec.get("instance_type", DEFAULT_INSTANCE_TYPE))
        if count is ABSENT or itype is ABSENT:
            raise PipelineError(f"a {kind} step's instance count and type need values")
        return count, itype

    def _inputs(self, scope: Scope, step: Step) -> dict[str, Any]:
        inputs = {}
        for key, raw in (step.spec.get("inputs") or {}).items():
            value = scope.value(raw)
            if value is ABSENT or value is None:
                continue  # an optional input without a value
            inputs[key] = value
        return inputs

    def _processing(self, scope: Scope, step: Step, name: str, upstream: set[str]) -> None:
        from sagemaker.processing import ProcessingInput, ProcessingOutput, Processor
        from sagemaker.workflow.steps import ProcessingStep

        outputs = list(step.spec.get("outputs") or [])
        properties: dict[str, Any] = {}

        def build() -> Any:
            count, itype = self._instances(scope, step.spec, "processing")
            sharded = set(step.spec.get("sharded") or [])
            args = []
            for raw in step.spec.get("args") or []:
                value = scope.value(raw)
                if value is ABSENT:
                    raise PipelineError(f"step {name}: argument {raw} has no value: pass --param"
                                        f" {raw[9:-1]}=...")
                args.append(as_string(value))
            # the image's own ENTRYPOINT, spelled out: the SDK's local mode cannot pass container
            # arguments without one (KeyError: 'entrypoint' in sagemaker.local.image)
            processor = Processor(role=self.target.role, image_uri=self.image(step.component),
                                  entrypoint=["python", "-m", str(step.component)],
                                  instance_count=count, instance_type=itype,
                                  base_job_name=f"{self.pipeline.name}-{name}"[:60],
                                  sagemaker_session=self.session)
            step_args = processor.run(
                inputs=[ProcessingInput(source=value, destination=f"/opt/ml/processing/input/{key}",
                                        input_name=key, s3_data_distribution_type=(
                                            SHARDED if key in sharded else REPLICATED))
                        for key, value in self._inputs(scope, step).items()],
                outputs=[ProcessingOutput(output_name=out, source=f"/opt/ml/processing/output/{out}",
                                          destination=self._output_uri(name, out))
                         for out in outputs],
                arguments=[step.mode, *args])
            return ProcessingStep(name, step_args=step_args, depends_on=self.depends(name) or None,
                                  property_files=self.property_files.get(name) or None)

        self.node(name, upstream, build)
        for out in outputs:  # the step's properties, read lazily: the step is built later
            properties[out] = StepProperty(self, name, lambda s, out=out: s.properties
                                           .ProcessingOutputConfig.Outputs[out].S3Output.S3Uri)
        scope.outputs[step.name] = properties

    def _training(self, scope: Scope, step: Step, name: str, upstream: set[str]) -> None:
        from sagemaker.estimator import Estimator
        from sagemaker.inputs import TrainingInput
        from sagemaker.tuner import HyperparameterTuner
        from sagemaker.workflow.steps import TrainingStep, TuningStep

        tuning = self.target.tuning if scope.mapped is None else None  # not an inlined retraining

        def build() -> Any:
            count, itype = self._instances(scope, step.spec, "training")
            hyperparameters = {}
            for key, raw in (step.spec.get("hyperparameters") or {}).items():
                if tuning and key in tuning.space:
                    continue  # the tuner sets it
                value = scope.value(raw)
                if value is not ABSENT and value is not None:
                    hyperparameters[key] = as_string(value)
            spot = {"use_spot_instances": True, "max_wait": self.target.max_run_s} \
                if self.target.spot else {}
            estimator = Estimator(
                image_uri=self.image(step.component), role=self.target.role,
                instance_count=count, instance_type=itype, hyperparameters=hyperparameters,
                metric_definitions=[dict(m) for m in METRIC_DEFINITIONS],
                output_path=self._output_uri(name),
                # (local mode refuses a checkpoint URI: the local runner keeps checkpoints itself;
                # a tuning job's training jobs would all share it)
                checkpoint_s3_uri=None if self.target.local or tuning else self._output_uri(
                    name, "checkpoints"),
                max_run=self.target.max_run_s, base_job_name=f"{self.pipeline.name}-{name}"[:60],
                disable_profiler=True, debugger_hook_config=False,  # the image has no smdebug
                sagemaker_session=self.session, **spot)
            sharded = set(step.spec.get("sharded") or [])
            channels = {key: TrainingInput(value, distribution=SHARDED if key in sharded
                                           else REPLICATED,
                                           content_type=None if key == "model" else SHARDS)
                        for key, value in self._inputs(scope, step).items()}
            if tuning is None:
                return TrainingStep(name, step_args=estimator.fit(inputs=channels),
                                    depends_on=self.depends(name) or None)
            tuner = HyperparameterTuner(
                estimator, objective_metric_name=OBJECTIVE["MetricName"],
                objective_type=OBJECTIVE["Type"], hyperparameter_ranges=tuning.ranges(),
                metric_definitions=[dict(m) for m in METRIC_DEFINITIONS],
                strategy="Bayesian", max_jobs=tuning.max_jobs,
                max_parallel_jobs=tuning.max_parallel_jobs, early_stopping_type="Auto")
            return TuningStep(name, step_args=tuner.fit(inputs=channels),
                              depends_on=self.depends(name) or None)

        self.node(name, upstream, build)
        if tuning is not None:  # the best training job's model (top_k=0), under this step's place
            scope.outputs[step.name] = {"model": StepProperty(self, name, lambda s: self._output_uri(
                name, s.properties.TrainingJobSummaries[0].TrainingJobName, "output",
                "model.tar.gz"))}
            return
        scope.outputs[step.name] = {
            "model": StepProperty(self, name, lambda s: s.properties.ModelArtifacts.S3ModelArtifacts),
            "output_data": StepProperty(self, name,
                                        lambda s: s.properties.OutputDataConfig.S3OutputPath)}

    def _transform(self, scope: Scope, step: Step, name: str, upstream: set[str]) -> None:
        from sagemaker.model import Model
        from sagemaker.transformer import Transformer
        from sagemaker.workflow.functions import Join
        from sagemaker.workflow.model_step import ModelStep
        from sagemaker.workflow.steps import TransformStep

        if {"model", "data"} - set(step.spec.get("inputs") or {}):
            raise PipelineError(f"step {name}: a transform needs inputs model and data")
        model_step = f"{name}-model"

        def build_model() -> Any:
            _, itype = self._instances(scope, step.spec, "transform")
            inputs = self._inputs(scope, step)
            model = Model(image_uri=self.image("algorithm"), model_data=inputs["model"],
                          role=self.target.role, sagemaker_session=self.session)
            return ModelStep(model_step, step_args=model.create(instance_type=itype),
                             depends_on=self.depends(model_step) or None)

        def build() -> Any:
            count, itype = self._instances(scope, step.spec, "transform")
            inputs = self._inputs(scope, step)
            transformer = Transformer(
                model_name=self.built[model_step].properties.ModelName, instance_count=count,
                instance_type=itype, output_path=self._output_uri(name, "predictions"),
                accept=step.spec.get("accept", "application/jsonlines"),
                # one shard per request: SplitType None sends whole objects, and MultiRecord would
                # let the SDK's local mode join several .npy files into one body (it fails on
                # binary data: "can only concatenate str (not "bytes") to str")
                strategy="SingleRecord",
                base_transform_job_name=f"{self.pipeline.name}-{name}"[:60],
                sagemaker_session=self.session)
            # the shards only: the data set's manifest and class list are not requests
            step_args = transformer.transform(Join(on="/", values=[inputs["data"], "shard-"]),
                                              content_type=SHARDS, split_type=None)
            return TransformStep(name, step_args=step_args)

        self.node(model_step, upstream, build_model)
        self.node(name, {model_step}, build)
        scope.outputs[step.name] = {"predictions": StepProperty(
            self, name, lambda s: s.properties.TransformOutput.S3OutputPath)}

    def _condition(self, scope: Scope, step: Step, name: str, upstream: set[str]) -> None:
        from sagemaker.workflow.condition_step import ConditionStep
        from sagemaker.workflow.functions import JsonGet
        from sagemaker.workflow.properties import PropertyFile

        match = re.fullmatch(r"\$\{steps\.([A-Za-z0-9_-]+)\.outputs\.([A-Za-z0-9_]+)\}/(.+)",
                             str(step.spec.get("file", "")))
        if not match:
            raise PipelineError(f"step {name}: the export reads a condition's file as"
                                " ${steps.STEP.outputs.OUTPUT}/PATH; got"
                                f" {step.spec.get('file')!r}")
        source, output, path = match.groups()
        source_name = scope.prefix + source
        if scope.pipeline.steps[source].job != "processing":
            raise PipelineError(f"step {name}: SageMaker reads property files of processing"
                                f" steps only; {source} is a {scope.pipeline.steps[source].job}")
        prop = PropertyFile(name=f"{name}-file", output_name=output, path=path)
        self.property_files.setdefault(source_name, []).append(prop)
        checks = step.spec.get("all") or []

        def build() -> Any:
            conditions = [condition(check["op"], JsonGet(step_name=source_name, property_file=prop,
                                                         json_path=check["path"]),
                                    scope.value(check["value"])) for check in checks]
            return ConditionStep(name, conditions=conditions, if_steps=self.branch(name),
                                 else_steps=[], depends_on=self.depends(name) or None)

        self.node(name, upstream | {source_name}, build, condition=True)
        scope.outputs[step.name] = {}

    def _register(self, scope: Scope, step: Step, name: str, upstream: set[str]) -> None:
        from sagemaker.model import Model
        from sagemaker.model_metrics import MetricsSource, ModelMetrics
        from sagemaker.workflow.functions import Join
        from sagemaker.workflow.model_step import ModelStep

        from algorithm.serve.content_types import ACCEPT_TYPES, CONTENT_TYPES
        from pipelines.algorithm_spec import INFERENCE_INSTANCES

        if self.target.local:
            self.left_out.append(f"{name} (the SDK's local mode: 'Step type RegisterModel is not"
                                 " supported in local mode')")
            scope.outputs[step.name] = {}
            return

        def build() -> Any:
            inputs = self._inputs(scope, step)
            if "model" not in inputs:
                raise PipelineError(f"step {name}: a register step needs its model input")
            model = Model(image_uri=self.image("algorithm"), model_data=inputs["model"],
                          role=self.target.role, sagemaker_session=self.session)
            metrics = None
            if "evaluation" in inputs:
                metrics = ModelMetrics(model_statistics=MetricsSource(
                    s3_uri=Join(on="/", values=[inputs["evaluation"], "evaluation.json"]),
                    content_type="application/json"))
            metadata = {key: inputs[key] for key in ("detector", "explanations") if key in inputs}
            warm = scope.value(step.spec.get("warm_start"))
            if warm not in (ABSENT, None):
                metadata["retrained_from"] = warm
            status = scope.value(step.spec.get("approval_status", "PendingManualApproval"))
            step_args = model.register(
                content_types=list(CONTENT_TYPES), response_types=list(ACCEPT_TYPES),
                inference_instances=list(INFERENCE_INSTANCES),
                transform_instances=list(INFERENCE_INSTANCES),
                model_package_group_name=scope.value(step.spec["model_name"]),
                approval_status=status, model_metrics=metrics,
                customer_metadata_properties=metadata or None)
            return ModelStep(name, step_args=step_args, depends_on=self.depends(name) or None)

        self.node(name, upstream, build)
        scope.outputs[step.name] = {}

    def _registered_model(self, scope: Scope, step: Step, name: str, upstream: set[str]) -> None:
        """No step: the model (and detector) are parameters, which `start` fills with the model
        package group's latest Approved version; an optional one without a value is left out."""
        outputs, names = {}, []
        for key, raw in (step.spec.get("inputs") or {}).items():
            ref = REFERENCE.fullmatch(str(raw))
            if not ref or not ref.group(1).startswith("params."):
                raise PipelineError(f"step {name}: a registered_model step's inputs must each be"
                                    " one parameter (the export makes them its parameters)")
            param = ref.group(1).split(".")[1]
            names.append(param)
            if scope.mapped is not None or step.spec.get("optional"):
                outputs[key] = scope.param(param)
            else:
                outputs[key] = self.parameter(param, scope.pipeline.parameters[param],
                                              required=True)
        scope.outputs[step.name] = outputs
        given = {k: v for k, v in outputs.items() if v is not ABSENT}
        if not given:
            self.left_out.append(f"{name} (no model given: nothing to compare with; export with"
                                 f" --param {names[0]}=s3://... for a parameter `start` fills)")
        elif scope.mapped is None:
            self.left_out.append(f"{name} (parameters {', '.join(p.name for p in given.values())}:"
                                 " `start` fills them from the model package group's latest"
                                 " Approved version)")

    def _report(self, scope: Scope, step: Step, name: str, upstream: set[str]) -> None:
        scope.outputs[step.name] = {}
        self.left_out.append(f"{name} (the local runner's summary page)")

    def _retrain(self, scope: Scope, step: Step, name: str, upstream: set[str]) -> None:
        from sagemaker.workflow.condition_step import ConditionStep
        from sagemaker.workflow.conditions import ConditionEquals
        from sagemaker.workflow.parameters import ParameterBoolean

        if scope.mapped is not None:
            raise PipelineError(f"step {name}: a retraining inside a retraining cannot be exported")
        mapped = step.spec.get("params") or {}
        if scope.value(mapped.get("input_data")) in (ABSENT, None):
            self.left_out.append(f"{name} (no labelled data to retrain on: pass --param"
                                 " retrain_input_data=s3://...)")
            scope.outputs[step.name] = {}
            return
        definition = (scope.pipeline.source.parent / str(step.spec.get("definition",
                                                                        "training.yaml")))
        inner = Scope(self, load_pipeline(definition), RETRAIN_PREFIX, mapped, scope)
        allowed = self.parameters.setdefault("retrain_allowed", ParameterBoolean(
            name="retrain_allowed", default_value=True))
        self.node(name, upstream, lambda: ConditionStep(
            name, conditions=[ConditionEquals(left=allowed, right=True)],
            if_steps=self.branch(name), else_steps=[]), condition=True)
        self.add_pipeline(inner, {name})
        scope.outputs[step.name] = {}

    # -- building -----------------------------------------------------------------------------
    def image(self, component: str | None) -> str:
        try:
            return self.target.images[str(component)]
        except KeyError:
            raise PipelineError(f"the image map has no {component!r} image; it has:"
                                f" {', '.join(self.target.images)}") from None

    def conditions_of(self, name: str) -> set[str]:
        """The condition steps upstream of a step, however far."""
        found, stack = set(), list(self.nodes[name].upstream)
        while stack:
            current = stack.pop()
            if current in found or current not in self.nodes:
                continue
            if self.nodes[current].condition:
                found.add(current)
            stack.extend(self.nodes[current].upstream)
        return found

    def place(self, name: str) -> str | None:
        """The condition whose branch a step belongs to: the innermost one above it."""
        conditions = self.conditions_of(name)
        return max(conditions, key=lambda c: (len(self.conditions_of(c)), c)) if conditions \
            else None

    def branch(self, condition: str) -> list[Any]:
        return [self.step(n) for n in self.nodes if self.place(n) == condition]

    def step(self, name: str) -> Any:
        if name not in self.built:
            for upstream in sorted(self.nodes[name].upstream):
                if not self.nodes[upstream].condition:
                    self.step(upstream)  # properties and property files exist before use
            self.built[name] = self.nodes[name].build()
        return self.built[name]

    def export(self) -> Any:
        from sagemaker.workflow.pipeline import Pipeline as SageMakerPipeline

        self.add_pipeline(Scope(self, self.pipeline), set())
        # property files are attached to their steps before those are built
        top = [self.step(n) for n in self.nodes if self.place(n) is None]
        return SageMakerPipeline(name=self.pipeline.name, parameters=list(self.parameters.values()),
                                 steps=top, sagemaker_session=self.session)


@dataclass(frozen=True)
class StepProperty:
    """A step's output, read from the step when a later step is built (the step is built then,
    once every property file it carries is known)."""

    exporter: Exporter
    name: str
    read: Callable[[Any], Any]

    def resolve(self) -> Any:
        return self.read(self.exporter.step(self.name))


def resolved(value: Any) -> Any:
    return value.resolve() if isinstance(value, StepProperty) else value


def condition(op: str, left: Any, right: Any) -> Any:
    from sagemaker.workflow import conditions as c

    kinds = {">=": c.ConditionGreaterThanOrEqualTo, ">": c.ConditionGreaterThan,
             "<=": c.ConditionLessThanOrEqualTo, "<": c.ConditionLessThan, "==": c.ConditionEquals}
    if right is ABSENT:
        raise PipelineError(f"a condition compares with a parameter that has no value ({op})")
    if op == "!=":
        return c.ConditionNot(expression=c.ConditionEquals(left=left, right=right))
    return kinds[op](left=left, right=right)


def convert(name: str, text: str, kind: type) -> Any:
    """A `--param` value as the parameter's type."""
    if kind.__name__ == "ParameterBoolean":
        if text.lower() not in ("true", "false"):
            raise PipelineError(f"--param {name}={text}: expected true or false")
        return text.lower() == "true"
    parse, what = {"ParameterInteger": (int, "an integer"),
                   "ParameterFloat": (float, "a number")}.get(kind.__name__, (str, "text"))
    try:
        return parse(text)
    except ValueError:
        raise PipelineError(f"--param {name}={text}: expected {what}") from None


def export_definition(path: Path, target: Target) -> tuple[dict[str, Any], list[str]]:
    """(the pipeline definition as SageMaker takes it, the steps left out and why)."""
    import json

    from pipelines.aws import pipeline_session

    exporter = Exporter(load_pipeline(path), target, pipeline_session(target.region))
    pipeline = exporter.export()
    return json.loads(pipeline.definition()), exporter.left_out
