"""`python -m pipelines export`: the YAML pipelines as SageMaker pipeline definitions, checked step by
step against the YAML and the local runner's graph, each step's request against SageMaker's API
model, and both whole definitions against golden files (tests/golden/; after a deliberate change,
rewrite them with UPDATE_GOLDEN=1)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import yaml
from botocore.stub import ANY

from pipelines.__main__ import main
from pipelines.definition import REFERENCE, PipelineError, load_pipeline
from pipelines.export import LOCAL_ONLY, RETRAIN_PREFIX, Target, export_definition
from tests.sagemaker_api import request_errors, stubbed_sagemaker

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden"
ECR = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
IMAGES = {c: f"{ECR}/sagemaker-image-mlops-{c}@sha256:{str(i) * 64}"
          for i, c in enumerate(("processing", "algorithm", "monitoring", "explainability"), 1)}
ROLE = "arn:aws:iam::123456789012:role/SageMakerPipelines"
S3 = "s3://example-bucket/mlops"
# the request each step kind's Arguments are (less the job name SageMaker gives at run time)
OPERATIONS = {"Processing": ("CreateProcessingJob", "ProcessingJobName"),
              "Training": ("CreateTrainingJob", "TrainingJobName"),
              "Transform": ("CreateTransformJob", "TransformJobName"),
              "Model": ("CreateModel", "ModelName"),
              "Tuning": ("CreateHyperParameterTuningJob", "HyperParameterTuningJobName"),
              "RegisterModel": ("CreateModelPackage", None)}


def export(tmp_path, definition, *params, flags=()):
    images = tmp_path / "image-uris.json"
    images.write_text(json.dumps(IMAGES))
    out = tmp_path / f"{Path(definition).stem}.json"
    args = ["export", str(ROOT / "pipelines" / definition), "--images", str(images), "--role", ROLE,
            "--s3", S3, "--out", str(out), *flags]
    for param in params:
        args += ["--param", param]
    assert main(args) == 0
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def training(tmp_path_factory):
    return export(tmp_path_factory.mktemp("training"), "training.yaml",
                  "input_data=s3://example-bucket/digits",
                  "champion_model=s3://example-bucket/approved/model.tar.gz")


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """The training pipeline with its training step as a tuner over the default search space."""
    return export(tmp_path_factory.mktemp("tuned"), "training.yaml",
                  "input_data=s3://example-bucket/digits",
                  flags=["--tuning", "--tuning-jobs", "12", "--tuning-parallel", "3"])


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    return export(tmp_path_factory.mktemp("batch"), "batch_inference.yaml",
                  "input_data=s3://example-bucket/production",
                  "retrain_input_data=s3://example-bucket/digits",
                  "retrain_extra_data=s3://example-bucket/labelled")


def walk(steps, condition=None):
    """(step, the condition whose branch holds it) for every step, branches included."""
    for step in steps:
        yield step, condition
        if step["Type"] == "Condition":
            yield from walk(step["Arguments"]["IfSteps"], step["Name"])
            yield from walk(step["Arguments"]["ElseSteps"], step["Name"])


def by_name(definition):
    return {s["Name"]: s for s, _ in walk(definition["Steps"])}


def yaml_name(name: str) -> str:
    """The YAML step an exported step comes from."""
    name = re.sub(r"-(RegisterModel|CreateModel)$", "", name)
    return name.removesuffix("-model")


def references(value) -> set[str]:
    """Every `Get` target inside a value: Parameters.x, Steps.y...."""
    found = set()
    if isinstance(value, dict):
        if "Get" in value and isinstance(value["Get"], str):
            found.add(value["Get"])
        for item in value.values():
            found |= references(item)
    elif isinstance(value, list):
        for item in value:
            found |= references(item)
    return found


def step_upstream(step, branch_of) -> set[str]:
    """The exported steps a step waits for: DependsOn, the steps it reads, its condition."""
    found = set(step.get("DependsOn") or [])
    own = {k: v for k, v in step["Arguments"].items() if k not in ("IfSteps", "ElseSteps")}
    for ref in references(own):
        if ref.startswith("Steps."):
            found.add(ref.split(".")[1])
    if branch_of:
        found.add(branch_of)
    return {yaml_name(n) for n in found} - {yaml_name(step["Name"])}


@pytest.mark.parametrize("fixture", ["training", "batch"])
def test_the_definition_is_the_golden_file(fixture, request):
    definition = request.getfixturevalue(fixture)
    golden = GOLDEN / f"{fixture}.json"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(json.dumps(definition, indent=1, sort_keys=True) + "\n")
    assert definition == json.loads(golden.read_text()), (
        f"the export of {fixture} changed; if deliberately, rewrite {golden} with UPDATE_GOLDEN=1")


@pytest.mark.parametrize("fixture", ["training", "batch", "tuned"])
def test_every_step_is_a_request_sagemakers_api_model_accepts(fixture, request):
    definition = request.getfixturevalue(fixture)
    defaults = {p["Name"]: p["DefaultValue"] for p in definition["Parameters"]
                if "DefaultValue" in p}
    kinds = set()
    for step, _ in walk(definition["Steps"]):
        kinds.add(step["Type"])
        if step["Type"] == "Condition":
            continue
        operation, job_name = OPERATIONS[step["Type"]]
        body = dict(step["Arguments"], **({job_name: "name"} if job_name else {}))
        assert request_errors(body, operation, defaults) == [], step["Name"]
    assert kinds >= {"Processing", "RegisterModel", "Condition"} and kinds & {"Training", "Tuning"}


@pytest.mark.parametrize("fixture,definition", [("training", "training.yaml"),
                                                ("batch", "batch_inference.yaml")])
def test_steps_run_the_mapped_images_with_the_yamls_arguments(fixture, definition, request):
    exported = by_name(request.getfixturevalue(fixture))
    pipeline = load_pipeline(ROOT / "pipelines" / definition)
    nested = load_pipeline(ROOT / "pipelines" / "training.yaml")
    yaml_steps = {**{RETRAIN_PREFIX + n: s for n, s in nested.steps.items()}, **pipeline.steps}
    for name, step in exported.items():
        source = yaml_steps[yaml_name(name)]
        args = step["Arguments"]
        if step["Type"] == "Processing":
            assert args["AppSpecification"]["ImageUri"] == IMAGES[source.component]
            dockerfile = (ROOT / "images" / source.component / "Dockerfile").read_text()
            entrypoint = json.loads(re.search(r"^ENTRYPOINT (.+)$", dockerfile, re.M)[1])
            assert args["AppSpecification"]["ContainerEntrypoint"] == entrypoint  # the image's own
            container = args["AppSpecification"]["ContainerArguments"]
            assert container[0] == source.mode
            assert len(container) == 1 + len(source.spec.get("args") or [])
            for given, raw in zip(container[1:], source.spec.get("args") or [], strict=True):
                ref = REFERENCE.fullmatch(str(raw))
                if not ref:
                    assert given == raw
                elif not name.startswith(RETRAIN_PREFIX):  # a parameter of the pipeline
                    assert references(given) == {f"Parameters.{ref.group(1)[7:]}"}, (name, raw)
            inputs = {i["InputName"]: i["S3Input"]["LocalPath"] for i in args["ProcessingInputs"]}
            assert all(path == f"/opt/ml/processing/input/{key}" for key, path in inputs.items())
            assert set(inputs) <= set(source.spec["inputs"])
            assert [o["OutputName"] for o in args["ProcessingOutputConfig"]["Outputs"]] == \
                list(source.spec.get("outputs") or [])
        elif step["Type"] == "Training":
            assert args["AlgorithmSpecification"]["TrainingImage"] == IMAGES["algorithm"]
            assert set(args["HyperParameters"]) == set(source.spec["hyperparameters"])
            names = {m["Name"] for m in args["AlgorithmSpecification"]["MetricDefinitions"]}
            assert {"validation:accuracy", "train:loss", "test:accuracy"} <= names
            assert "CheckpointConfig" in args
        elif step["Type"] in ("Model", "RegisterModel"):
            containers = args.get("PrimaryContainer") or args["InferenceSpecification"]["Containers"][0]
            assert containers["Image"] == IMAGES["algorithm"]


@pytest.mark.parametrize("fixture,definition", [("training", "training.yaml"),
                                                ("batch", "batch_inference.yaml"),
                                                ("tuned", "training.yaml")])
def test_the_dependency_graph_is_the_local_runners(fixture, definition, request):
    exported = request.getfixturevalue(fixture)
    pipeline = load_pipeline(ROOT / "pipelines" / definition)
    graphs = [("", pipeline)]
    if fixture == "batch":
        graphs.append((RETRAIN_PREFIX, load_pipeline(ROOT / "pipelines" / "training.yaml")))
    kept = {yaml_name(s["Name"]) for s, _ in walk(exported["Steps"])}
    expected = {}
    for prefix, graph in graphs:
        dropped = {n for n, s in graph.steps.items()
                   if s.job in LOCAL_ONLY or s.job == "registered_model"}
        for name in graph.order:
            if name not in dropped:
                expected[prefix + name] = {prefix + u for u in graph.steps[name].upstream - dropped}
    if fixture == "batch":  # the inlined pipeline's first steps come after the retrain condition
        for name in load_pipeline(ROOT / "pipelines" / "training.yaml").steps:
            if RETRAIN_PREFIX + name in expected and not expected[RETRAIN_PREFIX + name]:
                expected[RETRAIN_PREFIX + name] = {"retrain"}
    assert kept == set(expected)
    actual = {}
    for step, condition in walk(exported["Steps"]):
        actual.setdefault(yaml_name(step["Name"]), set()).update(step_upstream(step, condition))
    # a branch's steps wait for their condition, which the YAML may reach through another step
    for name, upstream in actual.items():
        assert expected[name] <= upstream, name
        assert upstream - expected[name] <= _conditions_above(name, exported), name


def _conditions_above(name, exported) -> set[str]:
    return {c for s, c in walk(exported["Steps"]) if yaml_name(s["Name"]) == name and c}


def test_the_gate_reads_the_evaluation_files_metrics(training):
    steps = by_name(training)
    gate = steps["check_evaluation"]
    files = {f["PropertyFileName"]: f for f in steps["evaluate"]["PropertyFiles"]}
    paths = {}
    for check in gate["Arguments"]["Conditions"]:
        get = check["LeftValue"]["Std:JsonGet"]
        file = files[get["PropertyFile"]["Get"].split(".")[-1]]
        assert (file["OutputName"], file["FilePath"]) == ("evaluation", "evaluation.json")
        paths[get["Path"]] = (check["Type"], check["RightValue"])
    assert paths == {
        "multiclass_classification_metrics.accuracy.value": (
            "GreaterThanOrEqualTo", {"Get": "Parameters.accuracy_threshold"}),
        "robustness.relative_drop": (
            "LessThanOrEqualTo", {"Get": "Parameters.robustness_drop_threshold"}),
        "champion.passed": ("Equals", True)}
    branch = {yaml_name(s["Name"]) for s in gate["Arguments"]["IfSteps"]}
    assert branch == {"drift_reference", "explain", "register"} and not gate["Arguments"]["ElseSteps"]


def test_registration_is_pending_approval_with_the_evaluation_as_its_statistics(training):
    register = by_name(training)["register-RegisterModel"]["Arguments"]
    parameters = {p["Name"]: p for p in training["Parameters"]}
    assert register["ModelApprovalStatus"] == {"Get": "Parameters.model_approval_status"}
    assert parameters["model_approval_status"]["DefaultValue"] == "PendingManualApproval"
    assert register["ModelPackageGroupName"] == {"Get": "Parameters.model_package_name"}
    statistics = register["ModelMetrics"]["ModelQuality"]["Statistics"]
    assert statistics["S3Uri"]["Std:Join"]["Values"] == [
        {"Get": "Steps.evaluate.ProcessingOutputConfig.Outputs['evaluation'].S3Output.S3Uri"},
        "evaluation.json"]
    assert register["InferenceSpecification"]["Containers"][0]["ModelDataUrl"] == {
        "Get": "Steps.train.ModelArtifacts.S3ModelArtifacts"}
    assert set(register["CustomerMetadataProperties"]) == {"detector", "explanations"}


def test_parameters_are_typed_by_their_yaml_defaults_instance_types_included(training):
    parameters = {p["Name"]: (p["Type"], p.get("DefaultValue")) for p in training["Parameters"]}
    assert parameters["epochs"] == ("Integer", 6)
    assert parameters["learning_rate"] == ("Float", 0.002)
    assert parameters["input_data"] == ("String", "s3://example-bucket/digits")
    assert parameters["training_instance_type"] == ("String", "ml.m5.xlarge")
    assert parameters["training_instance_count"] == ("Integer", 1)
    assert "registry" not in parameters  # the local registry folder: no SageMaker step uses it
    train = by_name(training)["train"]["Arguments"]["ResourceConfig"]
    assert train["InstanceType"] == {"Get": "Parameters.training_instance_type"}
    assert train["InstanceCount"] == {"Get": "Parameters.training_instance_count"}


def test_the_batch_pipeline_takes_its_model_as_parameters_and_retrains_inside_the_drift_branch(
        batch):
    parameters = {p["Name"]: p for p in batch["Parameters"]}
    assert "DefaultValue" not in parameters["model"] and "DefaultValue" not in parameters["detector"]
    assert parameters["retrain_allowed"]["Type"] == "Boolean"
    steps = by_name(batch)
    transform = steps["transform"]["Arguments"]
    assert transform["TransformInput"]["ContentType"] == "application/x-npy"
    assert transform["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"]["Std:Join"][
        "Values"][-1] == "shard-"  # the shards, not the manifest
    assert transform["TransformOutput"]["Accept"] == "application/jsonlines"
    assert transform["BatchStrategy"] == "SingleRecord"  # one .npy shard per request
    drifted = steps["drifted"]["Arguments"]
    assert [s["Name"] for s in drifted["IfSteps"]] == ["retrain"]
    guard = steps["retrain"]["Arguments"]
    assert guard["Conditions"] == [{"Type": "Equals", "LeftValue": {
        "Get": "Parameters.retrain_allowed"}, "RightValue": True}]
    warm = steps["retrain-train"]["Arguments"]["InputDataConfig"]
    assert {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in warm}["model"] == {
        "Get": "Parameters.model"}
    reference = steps["retrain-drift_reference"]["Arguments"]["ProcessingInputs"][0]
    assert reference["S3Input"]["S3Uri"] == {"Get": "Parameters.retrain_extra_data"}
    registered = steps["retrain-register-RegisterModel"]["Arguments"]
    assert registered["CustomerMetadataProperties"]["retrained_from"] == {"Get": "Parameters.model"}


def test_with_tuning_the_training_step_is_a_tuner_over_the_search_space(tuned):
    from algorithm.metrics import METRIC_DEFINITIONS
    from pipelines.search_space import DEFAULT

    step = by_name(tuned)["train"]
    assert step["Type"] == "Tuning"
    config, job = step["Arguments"]["HyperParameterTuningJobConfig"], \
        step["Arguments"]["TrainingJobDefinition"]
    assert config["HyperParameterTuningJobObjective"] == {"Type": "Minimize",
                                                          "MetricName": "validation:nll"}
    assert config["Strategy"] == "Bayesian" and config["TrainingJobEarlyStoppingType"] == "Auto"
    assert config["ResourceLimits"] == {"MaxNumberOfTrainingJobs": 12, "MaxParallelTrainingJobs": 3}
    ranges = {}
    for kind, entries in config["ParameterRanges"].items():
        for entry in entries:
            ranges[entry["Name"]] = (kind, entry)
    space = yaml.safe_load(DEFAULT.read_text())  # as the user wrote it
    assert set(ranges) == set(space)
    for name, entry in space.items():
        kind, exported = ranges[name]
        if "choices" in entry:
            assert kind == "CategoricalParameterRanges"
            assert exported["Values"] == [str(v) for v in entry["choices"]]
        else:
            assert kind in ("ContinuousParameterRanges", "IntegerParameterRanges")
            assert (float(exported["MinValue"]), float(exported["MaxValue"])) == (
                float(entry["low"]), float(entry["high"]))
            assert exported["ScalingType"] == ("Logarithmic" if entry.get("log") else "Linear")
    # the searched hyperparameters are the tuner's; the others are the YAML's, as without tuning
    yaml_names = set(load_pipeline(ROOT / "pipelines" / "training.yaml").steps["train"]
                     .spec["hyperparameters"])
    assert set(job["StaticHyperParameters"]) == yaml_names - set(space)
    assert job["AlgorithmSpecification"]["MetricDefinitions"] == [dict(m) for m in METRIC_DEFINITIONS]
    assert job["AlgorithmSpecification"]["TrainingImage"] == IMAGES["algorithm"]
    assert "CheckpointConfig" not in job  # one URI would be every trial's


def test_with_tuning_the_later_steps_take_the_best_training_jobs_model(tuned):
    steps = by_name(tuned)
    output = steps["train"]["Arguments"]["TrainingJobDefinition"]["OutputDataConfig"][
        "S3OutputPath"]["Std:Join"]["Values"]
    best = output + [{"Get": "Steps.train.TrainingJobSummaries[0].TrainingJobName"}, "output",
                     "model.tar.gz"]
    evaluate = {i["InputName"]: i["S3Input"]["S3Uri"]
                for i in steps["evaluate"]["Arguments"]["ProcessingInputs"]}
    assert evaluate["model"] == {"Std:Join": {"On": "/", "Values": best}}
    register = steps["register-RegisterModel"]["Arguments"]
    assert register["InferenceSpecification"]["Containers"][0]["ModelDataUrl"] == {
        "Std:Join": {"On": "/", "Values": best}}


def test_tuning_needs_a_pipeline_with_one_training_step(tmp_path, capsys):
    images = tmp_path / "image-uris.json"
    images.write_text(json.dumps(IMAGES))
    assert main(["export", str(ROOT / "pipelines" / "batch_inference.yaml"), "--images",
                 str(images), "--role", ROLE, "--s3", S3, "--tuning", "--out",
                 str(tmp_path / "out.json")]) == 2
    assert "tuning needs a pipeline with one training step; it has 0" in capsys.readouterr().err


def test_without_data_to_retrain_on_the_batch_pipeline_has_no_retraining(tmp_path, capsys):
    definition = export(tmp_path, "batch_inference.yaml")
    names = set(by_name(definition))
    assert "retrain" not in names and not any(n.startswith(RETRAIN_PREFIX) for n in names)
    assert "retrain (no labelled data to retrain on" in capsys.readouterr().out


def target(**changes):
    values = {"images": IMAGES, "role": ROLE, "s3": S3, "region": "eu-west-1"} | changes
    return Target(**values)


def write_pipeline(tmp_path, steps, parameters=None):
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump({"name": "custom", "parameters": parameters or {"data": {}},
                                    "steps": steps}))
    return path


PROCESS = {"name": "process", "job": "processing", "component": "processing", "mode": "train",
           "inputs": {"data": "${params.data}"}, "outputs": ["train", "report"]}


@pytest.mark.parametrize("steps,message", [
    ([PROCESS, {"name": "gate", "job": "condition", "file": "/tmp/report.json",
                "all": [{"path": "x", "op": "==", "value": 1}]}],
     "reads a condition's file as ${steps.STEP.outputs.OUTPUT}/PATH"),
    ([PROCESS, {"name": "train", "job": "training", "component": "algorithm",
                "inputs": {"train": "${steps.process.outputs.train}"}},
      {"name": "gate", "job": "condition", "file": "${steps.train.outputs.model}/x.json",
       "all": [{"path": "x", "op": "==", "value": 1}]}],
     "property files of processing steps only; train is a training"),
    ([dict(PROCESS, args=["--image-size", "${params.size}"])],
     "argument ${params.size} has no value: pass --param size=..."),
])
def test_a_yaml_the_export_cannot_express_is_refused_with_the_reason(tmp_path, steps, message):
    path = write_pipeline(tmp_path, steps, {"data": {}, "size": {"default": None}})
    with pytest.raises(PipelineError, match=re.escape(message)):
        export_definition(path, target())


def test_bad_export_arguments_name_what_is_expected(tmp_path):
    with pytest.raises(PipelineError, match="expected s3://bucket"):
        target(s3="example-bucket/mlops")
    with pytest.raises(PipelineError, match="expected an IAM role ARN"):
        target(role="SageMakerRole")
    path = write_pipeline(tmp_path, [PROCESS])
    with pytest.raises(PipelineError, match="unknown parameter.*epochs.*it takes: data"):
        export_definition(path, target(params={"epochs": "3"}))
    with pytest.raises(PipelineError, match="has no 'processing' image; it has: algorithm"):
        export_definition(path, target(images={"algorithm": IMAGES["algorithm"]}))
    with pytest.raises(PipelineError, match="epochs=six: expected an integer"):
        export_definition(ROOT / "pipelines" / "training.yaml", target(params={"epochs": "six"}))


# -- start: the parameters the export leaves to the model package group --------------------------
# botocore's Stubber answers in place of SageMaker and checks every request against its API model.

GROUP = "image-classifier"
APPROVED_ARN = f"arn:aws:sagemaker:eu-west-1:123456789012:model-package/{GROUP}/3"
PENDING_ARN = f"arn:aws:sagemaker:eu-west-1:123456789012:model-package/{GROUP}/4"
MODEL = "s3://example-bucket/mlops/training/run3/train/model.tar.gz"


@pytest.fixture
def sagemaker():
    with stubbed_sagemaker() as stubbed:
        yield stubbed


def package(arn, status, metadata):
    return {"ModelPackageName": GROUP, "ModelPackageArn": arn, "ModelPackageStatus": "Completed",
            "CreationTime": "2026-11-27T00:00:00Z", "ModelApprovalStatus": status,
            "ModelPackageStatusDetails": {"ValidationStatuses": []},
            "InferenceSpecification": {"Containers": [{"Image": IMAGES["algorithm"],
                                                       "ModelDataUrl": MODEL}],
                                       "SupportedContentTypes": ["image/png"],
                                       "SupportedResponseMIMETypes": ["application/json"]},
            "CustomerMetadataProperties": metadata}


def summary(arn, status):
    return {"ModelPackageArn": arn, "ModelPackageStatus": "Completed", "ModelApprovalStatus": status,
            "CreationTime": "2026-11-27T00:00:00Z"}


def expect_latest(stubber, status, found):
    stubber.add_response("list_model_packages", {"ModelPackageSummaryList": [
        summary(p["ModelPackageArn"], status) for p in found]}, {
        "ModelPackageGroupName": GROUP, "ModelApprovalStatus": status,
        "SortBy": "CreationTime", "SortOrder": "Descending", "MaxResults": 1})
    for p in found:
        stubber.add_response("describe_model_package", p,
                             {"ModelPackageName": p["ModelPackageArn"]})


def expect_listing(stubber, status, found):
    stubber.add_response("list_model_packages", {"ModelPackageSummaryList": [
        summary(p["ModelPackageArn"], status) for p in found]},
        {"ModelPackageGroupName": GROUP, "ModelApprovalStatus": status})
    for p in found:
        stubber.add_response("describe_model_package", p,
                             {"ModelPackageName": p["ModelPackageArn"]})


def test_start_takes_the_model_and_detector_of_the_latest_approved_version(sagemaker, batch):
    from pipelines.aws import start_parameters

    client, stubber = sagemaker
    detector = "s3://example-bucket/mlops/training/run3/drift_reference/detector"
    expect_latest(stubber, "Approved", [package(APPROVED_ARN, "Approved", {"detector": detector})])
    expect_listing(stubber, "PendingManualApproval", [])
    expect_listing(stubber, "Rejected", [])
    values = start_parameters(client, batch, {"input_data": "s3://example-bucket/day-2"})
    assert values == {"input_data": "s3://example-bucket/day-2", "model": MODEL,
                      "detector": detector, "retrain_allowed": "true"}


def test_start_holds_retraining_while_a_version_retrained_from_the_model_waits(sagemaker, batch):
    from pipelines.aws import start_parameters

    client, stubber = sagemaker
    expect_latest(stubber, "Approved", [package(APPROVED_ARN, "Approved", {"detector": "s3://d"})])
    expect_listing(stubber, "PendingManualApproval", [
        package(PENDING_ARN, "PendingManualApproval", {"retrained_from": MODEL})])
    expect_listing(stubber, "Rejected", [])
    values = start_parameters(client, batch, {"input_data": "s3://example-bucket/day-3"})
    assert values["retrain_allowed"] == "false"


def test_start_without_an_approved_version_names_the_way_out(sagemaker, batch):
    from pipelines.aws import start_parameters

    client, stubber = sagemaker
    expect_latest(stubber, "Approved", [])
    with pytest.raises(PipelineError, match="has no Approved version: approve one"):
        start_parameters(client, batch, {"input_data": "s3://example-bucket/day-1"})
    with pytest.raises(PipelineError, match="unknown parameter.*epochs"):
        start_parameters(client, batch, {"epochs": "3"})


def test_upsert_creates_the_model_package_group_then_the_pipeline_then_updates_it(
        sagemaker, tmp_path, training):
    from pipelines.aws import upsert

    client, stubber = sagemaker
    path = tmp_path / "training.json"
    path.write_text(json.dumps(training))
    body = {"PipelineName": "image-classifier-training", "PipelineDefinition": path.read_text(),
            "RoleArn": ROLE}
    arn = "arn:aws:sagemaker:eu-west-1:123456789012:pipeline/image-classifier-training"
    stubber.add_client_error("describe_model_package_group", "ValidationException",
                             f"ModelPackageGroup {GROUP} does not exist.",
                             expected_params={"ModelPackageGroupName": GROUP})
    stubber.add_response("create_model_package_group", {
        "ModelPackageGroupArn": f"arn:aws:sagemaker:eu-west-1:123456789012:model-package-group/{GROUP}"},
        {"ModelPackageGroupName": GROUP, "ModelPackageGroupDescription": ANY})
    stubber.add_response("create_pipeline", {"PipelineArn": arn}, body)
    assert upsert(client, "image-classifier-training", path, ROLE) == arn
    stubber.add_response("describe_model_package_group", {
        "ModelPackageGroupName": GROUP, "ModelPackageGroupArn": "arn:aws:sagemaker:eu-west-1:"
        f"123456789012:model-package-group/{GROUP}", "CreationTime": "2026-11-27T00:00:00Z",
        "CreatedBy": {}, "ModelPackageGroupStatus": "Completed"}, {"ModelPackageGroupName": GROUP})
    stubber.add_client_error("create_pipeline", "ResourceInUse", expected_params=body)
    stubber.add_response("update_pipeline", {"PipelineArn": arn}, body)
    assert upsert(client, "image-classifier-training", path, ROLE) == arn


def test_managed_spot_training_keeps_checkpoints_in_s3(tmp_path):
    images = tmp_path / "image-uris.json"
    images.write_text(json.dumps(IMAGES))
    out = tmp_path / "spot.json"
    assert main(["export", str(ROOT / "pipelines" / "training.yaml"), "--images", str(images),
                 "--role", ROLE, "--s3", S3, "--spot", "--out", str(out)]) == 0
    train = by_name(json.loads(out.read_text()))["train"]["Arguments"]
    assert train["EnableManagedSpotTraining"] is True
    stopping = train["StoppingCondition"]
    assert stopping["MaxWaitTimeInSeconds"] >= stopping["MaxRuntimeInSeconds"]
    assert train["CheckpointConfig"]["S3Uri"]["Std:Join"]["Values"][-1] == "checkpoints"


def test_the_sdk_configuration_is_still_validated_once_per_distinct_configuration():
    """The export validates the SDK's configuration once, not at every lookup (25 s of 28): a
    configuration it has not seen is still checked against the SDK's schema, and refused."""
    import jsonschema
    import sagemaker.utils

    from pipelines.aws import pipeline_session

    session = pipeline_session("eu-west-1")
    validate = sagemaker.utils.validate_sagemaker_config
    validate(session.sagemaker_config)  # seen: no error
    assert sagemaker.utils.get_sagemaker_config_value(
        session, "SageMaker.PythonSDK.Modules.TelemetryOptOut") is True
    with pytest.raises(jsonschema.ValidationError):
        validate({"SchemaVersion": "1.0", "SageMaker": {"NoSuchSection": {}}})
    pipeline_session("eu-west-1")  # a second session keeps the one wrapper
    assert sagemaker.utils.validate_sagemaker_config is validate
