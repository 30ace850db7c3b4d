"""Several instances, both distribution types: every input image is processed exactly once.

SageMaker either copies an input to every host (`FullyReplicated`: each host must take its own
share) or splits it among them by S3 key (`ShardedByS3Key`: what a host received is its share,
all of which it must process). Each job is laid out here for 1, 2 and 3 hosts as SageMaker lays
it out (resourceconfig.json, processingjobconfig.json, each host's own /opt/ml), run host by host,
and the hosts' outputs are counted together.
"""

import json
import shutil
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from algorithm.data import ShareSampler
from monitoring.config import ServeConfig as DriftConfig
from monitoring.config import TrainConfig as DetectorConfig
from monitoring.config import VerdictConfig
from processing.config import ServeConfig, TrainConfig
from shared.data import ProcessedDataset
from shared.errors import UserError
from shared.sagemaker.inputs import FULLY_REPLICATED, SHARDED
from tests.conftest import write_json

DISTRIBUTIONS = (FULLY_REPLICATED, SHARDED)
CLASSES = ("cat", "dog", "owl")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """31 small labelled images (a count no host number divides), each with its own pixels."""
    root = tmp_path_factory.mktemp("images") / "data"
    rng = np.random.default_rng(0)
    for i in range(31):
        folder = root / CLASSES[i % 3]
        folder.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:03d}.png")
    return root


def relpaths(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png"))


def lay_out(tmp_path, host, hosts, inputs, distribution):
    """One host's /opt/ml; `data` arrives with `distribution` (a sharded one holds only this
    host's part, by S3 key, round robin), any other input whole."""
    base = tmp_path / host / "opt_ml"
    kind = {name: distribution if name == "data" else FULLY_REPLICATED for name in inputs}
    write_json(base / "config" / "resourceconfig.json", {"current_host": host, "hosts": hosts})
    write_json(base / "config" / "processingjobconfig.json", {"ProcessingInputs": [
        {"InputName": name, "S3Input": {"LocalPath": f"/opt/ml/processing/input/{name}",
                                        "S3DataDistributionType": kind[name],
                                        "S3InputMode": "File"}} for name in inputs]})
    for name, source in inputs.items():
        target = base / "processing" / "input" / name
        if kind[name] == SHARDED:
            index = hosts.index(host)
            for rel in relpaths(source)[index::len(hosts)]:
                (target / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(source / rel, target / rel)
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(source)
    return base


def run_on_hosts(tmp_path, monkeypatch, count, inputs, distribution, job):
    """Run `job()` as each of `count` hosts, in turn; the hosts' base folders."""
    hosts = [f"algo-{i}" for i in range(1, count + 1)]
    bases = []
    for host in hosts:
        base = lay_out(tmp_path, host, hosts, inputs, distribution)
        monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(base))
        job()
        bases.append(base)
    return bases


def sources(folder):
    return [r.source for r in ProcessedDataset(folder).records if "#aug" not in r.id]


@pytest.mark.parametrize("hosts", [1, 2, 3])
@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
def test_processing_serve_processes_every_image_exactly_once(images, tmp_path, monkeypatch,
                                                             distribution, hosts):
    from processing import serve

    bases = run_on_hosts(tmp_path, monkeypatch, hosts, {"data": images}, distribution,
                         lambda: serve.run(ServeConfig(image_size=8, workers=1)))
    seen = Counter(s for b in bases for s in sources(b / "processing" / "output" / "data"))
    assert sorted(seen) == relpaths(images) and set(seen.values()) == {1}
    if hosts > 1:  # per-host names: the hosts' files can share one S3 prefix
        names = {p.name for b in bases for p in (b / "processing" / "output" / "data").iterdir()}
        assert {f"manifest-algo-{i}.jsonl" for i in range(1, hosts + 1)} <= names


@pytest.mark.parametrize("hosts", [1, 2, 3])
@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
def test_processing_train_splits_every_image_exactly_once(images, tmp_path, monkeypatch,
                                                          distribution, hosts):
    from processing import train

    config = TrainConfig(image_size=8, workers=1, augment_copies=1, classes=list(CLASSES))
    bases = run_on_hosts(tmp_path, monkeypatch, hosts, {"data": images}, distribution,
                         lambda: train.run(config))
    seen = Counter(s for b in bases for split in ("train", "validation", "test")
                   for s in sources(b / "processing" / "output" / split))
    assert sorted(seen) == relpaths(images) and set(seen.values()) == {1}
    assert {json.dumps(ProcessedDataset(b / "processing" / "output" / "train").classes)
            for b in bases} == {json.dumps(list(CLASSES))}


def test_a_sharded_input_on_several_hosts_needs_the_class_names(images, tmp_path, monkeypatch):
    from processing import train

    with pytest.raises(UserError, match="no host sees every class folder: give the class names"):
        run_on_hosts(tmp_path, monkeypatch, 2, {"data": images}, SHARDED,
                     lambda: train.run(TrainConfig(image_size=8, workers=1)))


@pytest.mark.parametrize("hosts", [1, 2, 3])
@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
def test_drift_serve_tests_every_image_once_and_the_verdict_equals_one_host(
        images, tmp_path, monkeypatch, distribution, hosts):
    from monitoring import serve, train, verdict

    detector_base = tmp_path / "detector"
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(detector_base))
    train.run(DetectorConfig(input=images, image_size=24, permutations=50, workers=1))
    detector = detector_base / "processing" / "output" / "detector"
    bases = run_on_hosts(tmp_path, monkeypatch, hosts, {"data": images, "detector": detector},
                         distribution, lambda: serve.run(DriftConfig(workers=1)))
    reports = [json.loads(path.read_text()) for b in bases
               for path in (b / "processing" / "output" / "report").glob("drift*.json")]
    assert sum(r["n_test"] for r in reports) == len(relpaths(images))
    # every host's report and features in one prefix, as S3 would hold them
    joined = tmp_path / "reports"
    joined.mkdir()
    for b in bases:
        for path in (b / "processing" / "output" / "report").iterdir():
            shutil.copy(path, joined / path.name)
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(tmp_path / "verdict"))
    verdict.run(VerdictConfig(input=joined, detector=detector))
    one = json.loads((tmp_path / "verdict/processing/output/report/drift.json").read_text())
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(tmp_path / "single"))
    serve.run(DriftConfig(input=images, detector=detector, workers=1))
    single = json.loads((tmp_path / "single/processing/output/report/drift.json").read_text())
    assert one["n_test"] == single["n_test"] == len(relpaths(images))
    assert one["distance"] == pytest.approx(single["distance"], rel=1e-5)  # order-free statistic
    if distribution == FULLY_REPLICATED:
        # the same images in the same order: the same permutations, so the same test, up to the
        # float rounding of encoding them in other batches (which differs between CPUs)
        assert one["threshold"] == pytest.approx(single["threshold"], rel=1e-4)
        assert one["p_value"] == pytest.approx(single["p_value"], abs=1 / 50)
        assert one["drift"] == single["drift"]
    assert one["joined_hosts"] == [f"algo-{i}" for i in range(1, hosts + 1)]


@pytest.mark.parametrize("replicas,hosts", [(2, 1), (4, 2), (3, 3)])
def test_ddp_ranks_share_a_replicated_channel_and_keep_to_their_hosts_sharded_part(replicas,
                                                                                   hosts):
    """`ShareSampler` as the DataModule builds it: replicated, all ranks split one order of all
    the images; sharded, each host's ranks split only the images that host holds."""
    total = 23
    per_rank = -(-total // replicas)
    epochs = []
    for epoch in (0, 1):
        seen = Counter()
        for rank in range(replicas):
            sampler = ShareSampler(total, replicas=replicas, rank=rank, per_rank=per_rank,
                                   shuffle=True, seed=7)
            sampler.set_epoch(epoch)
            indices = list(sampler)
            assert len(indices) == len(sampler) == per_rank
            seen.update(indices)
        assert set(seen) == set(range(total))  # each image at least once an epoch ...
        assert sum(seen.values()) - total == replicas * per_rank - total  # ... repeats only to pad
        epochs.append(seen)
    host_part = {h: list(range(h, 40, hosts)) for h in range(hosts)}  # what each host received
    local = replicas // hosts if replicas >= hosts else 1
    need = max(-(-len(part) // local) for part in host_part.values())
    for part in host_part.values():
        seen = Counter()
        for rank in range(local):
            indices = list(ShareSampler(len(part), replicas=local, rank=rank, per_rank=need,
                                        shuffle=True, seed=7))
            assert len(indices) == need  # every rank of every host steps the same number of times
            seen.update(part[i] for i in indices)
        assert set(seen) == set(part)  # this host's images only, each at least once


def test_an_input_in_pipe_mode_is_refused_naming_it(images, tmp_path, monkeypatch):
    from processing import serve

    base = lay_out(tmp_path, "algo-1", ["algo-1"], {"data": images}, FULLY_REPLICATED)
    config = json.loads((base / "config" / "processingjobconfig.json").read_text())
    config["ProcessingInputs"][0]["S3Input"]["S3InputMode"] = "Pipe"
    write_json(base / "config" / "processingjobconfig.json", config)
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(base))
    with pytest.raises(UserError, match="the 'data' input is in Pipe mode.*File or FastFile"):
        serve.run(ServeConfig(image_size=8, workers=1))


def test_explaining_a_sharded_data_set_on_several_hosts_is_refused(tmp_path, monkeypatch,
                                                                   trained_job):
    from explainability import job
    from explainability.config import ServeConfig as ExplainServe

    data = trained_job[0] / "input" / "data" / "test"
    base = lay_out(tmp_path, "algo-1", ["algo-1", "algo-2"],
                   {"data": data, "model": trained_job[0] / "model"}, FULLY_REPLICATED)
    config = json.loads((base / "config" / "processingjobconfig.json").read_text())
    config["ProcessingInputs"][0]["S3Input"]["S3DataDistributionType"] = SHARDED
    write_json(base / "config" / "processingjobconfig.json", config)
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(base))
    with pytest.raises(UserError, match="must reach every host whole"):
        job.run(ExplainServe(), mode="serve")


def training_host(tmp_path, host, hosts, train, validation, distribution):
    """One host of a multi-instance training job, its channels laid out as SageMaker would."""
    from tests.conftest import training_job
    from tests.reliability import TINY_ARCHITECTURE

    base = training_job(tmp_path / host / "opt_ml", tmp_path, {
        "model_name": TINY_ARCHITECTURE, "epochs": "1", "batch_size": "16"}, ())
    for name, folder in (("train", train), ("validation", validation)):
        (base / "input" / "data").mkdir(parents=True, exist_ok=True)
        (base / "input" / "data" / name).symlink_to(folder)
    write_json(base / "input" / "config" / "resourceconfig.json",
               {"current_host": host, "hosts": hosts, "network_interface_name": "lo"})
    write_json(base / "input" / "config" / "inputdataconfig.json", {
        "train": {"TrainingInputMode": "File", "S3DistributionType": distribution},
        "validation": {"TrainingInputMode": "File", "S3DistributionType": FULLY_REPLICATED}})
    return base


@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
def test_two_instance_ddp_reads_a_sharded_channel_on_its_host_and_splits_a_replicated_one(
        tmp_path, distribution):
    """Two hosts, one process each, DDP over gloo on the loopback interface (the resource
    config's network_interface_name): a replicated train channel is split between the hosts, a
    sharded one is read whole by the host it was sent to."""
    import os
    import subprocess
    import sys

    from pipelines.server import free_port
    from tests.conftest import ROOT
    from tests.reliability import write_processed

    whole = write_processed(tmp_path / "whole", 16, {"train": slice(0, 120),
                                                     "validation": slice(120, 160)})
    halves = write_processed(tmp_path / "halves", 16, {"a": slice(0, 70), "b": slice(70, 120)})
    hosts = ["algo-1", "algo-2"]
    trains = ({h: whole / "train" for h in hosts} if distribution == FULLY_REPLICATED else
              {"algo-1": halves / "a", "algo-2": halves / "b"})
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(free_port())}
    procs = {}
    for host in hosts:
        base = training_host(tmp_path, host, hosts, trains[host], whole / "validation",
                             distribution)
        log = open(tmp_path / f"{host}.log", "w")
        procs[host] = (base, subprocess.Popen([sys.executable, "-m", "algorithm", "train"],
                                              env={**env, "SAGEMAKER_BASE_DIR": str(base)},
                                              cwd=ROOT, stdout=log, stderr=subprocess.STDOUT))
    for host, (_, proc) in procs.items():
        assert proc.wait(timeout=600) == 0, (tmp_path / f"{host}.log").read_text()[-3000:]
    logs = {h: (tmp_path / f"{h}.log").read_text() for h in hosts}
    # replicated: 120 on each host, split across the two ranks; sharded: each host reads all of
    # its own part, the shorter padding to the longer's count
    expected = {FULLY_REPLICATED: [(60, 120, "replicated"), (60, 120, "replicated")],
                SHARDED: [(70, 70, "sharded by S3 key"), (70, 50, "sharded by S3 key")]}
    for rank, (host, (reads, holds, how)) in enumerate(zip(hosts, expected[distribution],
                                                           strict=True)):
        assert (f"rank {rank} reads {reads} train images an epoch of the {holds} its host holds"
                f" ({how})") in logs[host]
    assert (procs["algo-1"][0] / "model" / "model.json").exists()  # the first host writes it
    assert not (procs["algo-2"][0] / "model" / "model.json").exists()


def test_a_training_channel_in_pipe_mode_is_refused_naming_it(tmp_path):
    import os

    from tests.conftest import run_entrypoint

    base = training_host(tmp_path, "algo-1", ["algo-1"], tmp_path, tmp_path, FULLY_REPLICATED)
    (base / "input" / "data" / "train").unlink()
    os.mkfifo(base / "input" / "data" / "train_0")  # what Pipe mode hands the container
    write_json(base / "input" / "config" / "inputdataconfig.json",
               {"train": {"TrainingInputMode": "File"}, "validation": {}})
    result = run_entrypoint("algorithm", "train", base=base)
    assert result.returncode == 2
    assert "the 'train' channel arrived in Pipe mode (train_0)" in (
        base / "output" / "failure").read_text()


def test_processing_train_merges_labelled_channels_once_each_with_their_channel(
        images, tmp_path, monkeypatch):
    """Newly labelled images arrive as a second input; one of them is a copy of an image the
    first input already has (the same bytes): it is kept once, from the first channel."""
    from processing import train

    extra = tmp_path / "extra"
    for rel in relpaths(images)[:4]:  # four copies of `data` images, under other names
        (extra / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(images / rel, extra / rel.replace(".png", "-copy.png"))
    (extra / "owl").mkdir()
    Image.new("RGB", (12, 12), (1, 2, 3)).save(extra / "owl" / "new.png")  # and one new image
    base = lay_out(tmp_path, "algo-1", ["algo-1"], {"data": images, "extra": extra},
                   FULLY_REPLICATED)
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(base))
    train.run(TrainConfig(image_size=8, workers=1, augment_copies=0, extra_channels=["extra"]))
    output = base / "processing" / "output"
    records = [r for split in ("train", "validation", "test")
               for r in ProcessedDataset(output / split).records]
    assert len(records) == len(relpaths(images)) + 1  # the copies kept once, the new image added
    assert Counter(r.channel for r in records) == {"data": len(relpaths(images)), "extra": 1}
    assert {r.id for r in records if r.channel == "extra"} == {"extra/owl/new.png"}
    report = json.loads((output / "report" / "report.json").read_text())
    assert report["channels"] == {
        "data": {"images": 31, "distribution": FULLY_REPLICATED, "present": True},
        "extra": {"images": 5, "distribution": FULLY_REPLICATED, "present": True}}
    assert sorted(d["path"] for d in report["duplicates"]) == sorted(
        f"extra/{rel.replace('.png', '-copy.png')}" for rel in relpaths(images)[:4])


def test_a_processed_data_set_split_between_hosts_by_key_is_refused_not_half_read(tmp_path):
    """S3 key sharding can send a manifest to one host and its shards to another: the training
    job must say so, not train on what happens to line up."""
    from tests.conftest import run_entrypoint
    from tests.reliability import write_processed

    whole = write_processed(tmp_path / "whole", 16, {"train": slice(0, 60),
                                                     "validation": slice(60, 80)})
    part = tmp_path / "part"  # what one host might receive: some shards, not their manifest
    part.mkdir()
    for shard in sorted((whole / "train").glob("shard-*.npy")):
        shutil.copy(shard, part / shard.name)
    shutil.copy(whole / "train" / "classes.json", part / "classes.json")
    (part / "manifest-algo-9.jsonl").write_text("")  # another host's lines would be here
    base = training_host(tmp_path, "algo-1", ["algo-1", "algo-2"], part, whole / "validation",
                         SHARDED)
    result = run_entrypoint("algorithm", "train", base=base)
    assert result.returncode == 2
    reason = (base / "output" / "failure").read_text()
    assert "train channel:" in reason and "ShardedByS3Key" in reason and "FullyReplicated" in reason


TWO_INSTANCES = """
name: two_instances
parameters: {images: {}}
steps:
  - name: process
    job: processing
    component: processing
    mode: train
    instances: 2
    sharded: [data]
    inputs: {data: "${params.images}"}
    args: [--image-size, "16", --workers, "1", --augment-copies, "0", --classes, "cat,dog,owl"]
    outputs: [train, validation, test]
  - name: train
    job: training
    component: algorithm
    instances: 2
    inputs:
      train: "${steps.process.outputs.train}"
      validation: "${steps.process.outputs.validation}"
    hyperparameters: {model_name: test_resnet, epochs: 1, batch_size: 8}
"""


def test_the_runner_runs_processing_and_training_on_two_instances(images, tmp_path):
    """The local engine lays out two hosts per step as SageMaker would: the images sharded
    between the processing hosts, whose outputs are gathered as one S3 prefix would hold them,
    then two training hosts sharing the data over DDP on the loopback interface."""
    from pipelines.definition import load_pipeline
    from pipelines.runner import Runner

    definition = tmp_path / "two.yaml"
    definition.write_text(TWO_INSTANCES)
    result = Runner(load_pipeline(definition), {"images": str(images)}, tmp_path / "run",
                    echo=False).run()
    assert result.ok, result.summary()
    process = result.outputs("process")
    seen = Counter(s for split in ("train", "validation", "test") for s in sources(process[split]))
    assert sorted(seen) == relpaths(images) and set(seen.values()) == {1}
    assert {p.name for p in process["train"].glob("manifest*")} == {
        "manifest-algo-1.jsonl", "manifest-algo-2.jsonl"}
    logs = [(tmp_path / "run" / "train" / f"log-algo-{i}.txt").read_text() for i in (1, 2)]
    assert all("(replicated)" in log for log in logs)
    assert (result.outputs("train")["model"] / "model.json").exists()
