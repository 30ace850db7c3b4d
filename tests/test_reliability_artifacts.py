"""Untrusted artifacts: hostile model tarballs and folders, model.json lies, dataset manifests.

Each is refused with a message that names the problem, and nothing is written outside the folder
the loader extracts into: the files around the artifact and the temporary directory are compared
before and after, byte for byte.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import tarfile
import tempfile

import pytest
import torch

from shared.data import DatasetFormatError, DatasetWriter, ProcessedDataset
from shared.models import UnsafeArtifactError, load_artifact, load_config
from tests.conftest import ROOT
from tests.reliability import write_tiny_model


@pytest.fixture(scope="module")
def model_files(tmp_path_factory) -> dict[str, bytes]:
    folder = write_tiny_model(tmp_path_factory.mktemp("tiny") / "model", size=16)
    return {p.name: p.read_bytes() for p in folder.iterdir()}


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    """The loaders' temporary directory, inside the test's own folder so it can be watched."""
    folder = tmp_path / "tmpdir"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def snapshot(root) -> dict[str, str]:
    """Every path below `root` with its content hash (links by target), to spot any write."""
    state = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            state[str(path)] = "link:" + str(path.readlink())
        elif path.is_file():
            state[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            state[str(path)] = "dir"
    return state


def entry(name: str, data: bytes = b"", **attrs) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for key, value in attrs.items():
        setattr(info, key, value)
    return info, data if info.isfile() else None


def hostile_tarballs(files: dict[str, bytes]) -> dict[str, tuple[list, str]]:
    """name -> (entries, the words the refusal must contain)."""
    weights, config = files["model.safetensors"], files["model.json"]
    good = [entry("model.safetensors", weights), entry("model.json", config)]
    pickle = io.BytesIO()
    torch.save({"w": torch.zeros(2)}, pickle)
    return {
        "parent traversal": (good + [entry("../evil.txt", b"gotcha")], "outside the archive"),
        "absolute path": ([entry("/tmp/evil.txt", b"gotcha")] + good, "outside the archive"),
        "traversal inside a folder": (good + [entry("a/../../evil.txt", b"x")], "outside the archive"),
        "symlink to /etc/passwd": ([entry("model.json", type=tarfile.SYMTYPE,
                                          linkname="/etc/passwd")] + good[:1], "link"),
        "symlinked folder, file through it": ([entry("d", type=tarfile.SYMTYPE, linkname=".."),
                                               entry("d/evil.txt", b"x")] + good, "link"),
        "hard link outside": ([entry("model.json", type=tarfile.LNKTYPE, linkname="../../x")]
                              + good[:1], "link"),
        "fifo": (good + [entry("pipe", type=tarfile.FIFOTYPE)], "not a regular file"),
        "character device": (good + [entry("null", type=tarfile.CHRTYPE, devmajor=1, devminor=3)],
                             "not a regular file"),
        "pickle named model.safetensors": ([entry("model.safetensors", pickle.getvalue()),
                                            entry("model.json", config)], "pickle"),
        "two model.json, one in a folder": (good + [entry("sub/model.json", b'{"evil": 1}')],
                                            "twice"),
        "not a tarball": ([], "not a readable tar archive"),
    }


@pytest.mark.parametrize("case", list(hostile_tarballs({"model.safetensors": b"", "model.json": b""})))
def test_hostile_tarballs_are_refused_and_nothing_is_written_outside(case, model_files, tmp_path,
                                                                     private_tmp):
    entries, message = hostile_tarballs(model_files)[case]
    tarball = tmp_path / "work" / "model.tar.gz"
    tarball.parent.mkdir()
    if entries:
        with tarfile.open(tarball, "w:gz") as tar:
            for info, data in entries:
                tar.addfile(info, io.BytesIO(data) if data is not None else None)
    else:
        tarball.write_bytes(b"\x1f\x8b" + bytes(200))
    before = snapshot(tmp_path)
    # load_config reads model.json alone, so a bad weights file is load_artifact's to find
    loaders = (load_artifact,) if case == "pickle named model.safetensors" else (load_artifact,
                                                                                 load_config)
    for loader in loaders:
        with pytest.raises(UnsafeArtifactError, match=message):
            loader(tarball)
    assert snapshot(tmp_path) == before  # private_tmp included: the extraction folder is gone too


def model_folder(tmp_path, files, **changes) -> object:
    folder = tmp_path / "model"
    folder.mkdir()
    config = json.loads(files["model.json"])
    config.update(changes)
    (folder / "model.json").write_text(json.dumps(config))
    (folder / "model.safetensors").write_bytes(files["model.safetensors"])
    return folder


@pytest.mark.parametrize("field,value,message", [
    ("mean", [float("nan"), 0.5, 0.5], "mean must be a list of 3 finite numbers"),
    ("std", [0.5, float("inf"), 0.5], "std must be a list of 3 finite numbers"),
    ("class_names", ["a", 7], "class_names must be a non-empty list of strings"),
    ("input_size", True, "input_size must be an integer"),
    ("input_size", 10**9, "input_size must be an integer"),
    ("extra", [], "extra must be an object"),
    ("architecture", "", "architecture must be a non-empty string"),
])
def test_model_json_lies_are_refused_by_name(model_files, tmp_path, field, value, message):
    folder = model_folder(tmp_path, model_files, **{field: value})
    with pytest.raises(UnsafeArtifactError, match=message):
        load_artifact(folder)


def test_an_oversized_model_json_is_refused_before_it_is_read(model_files, tmp_path):
    folder = model_folder(tmp_path, model_files)
    config = json.loads((folder / "model.json").read_text())
    config["extra"] = {"padding": "x" * (20 * 1024 * 1024)}
    (folder / "model.json").write_text(json.dumps(config))
    with pytest.raises(UnsafeArtifactError, match="larger than"):
        load_artifact(folder)


@pytest.mark.parametrize("shard", ["../outside.npy", "/etc/hosts", "sub/shard.npy", ".hidden.npy"])
def test_a_manifest_naming_files_outside_its_dataset_is_refused(tmp_path, shard):
    import numpy as np

    writer = DatasetWriter(tmp_path / "data", 8)
    writer.add(np.zeros((8, 8, 3), np.uint8), "a", "a")
    writer.commit({})
    np.save(tmp_path / "outside.npy", np.zeros((1, 8, 8, 3), np.uint8))
    manifest = tmp_path / "data" / "manifest.jsonl"
    record = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**record, "shard": shard}) + "\n")
    with pytest.raises(DatasetFormatError, match="not a shard file name"):
        ProcessedDataset(tmp_path / "data")


def one_image_dataset(folder, classes=None):
    import numpy as np

    writer = DatasetWriter(folder, 8, classes=classes)
    writer.add(np.zeros((8, 8, 3), np.uint8), "a", "a", "x" if classes else None)
    writer.add(np.full((8, 8, 3), 255, np.uint8), "b", "b", "x" if classes else None)
    writer.commit({})
    return folder / "manifest.jsonl"


@pytest.mark.parametrize("change,message", [
    ({"row": -1}, "row must be an integer >= 0"),  # numpy would read the last image
    ({"row": "1"}, "row must be an integer"),
    ({"row": 1.0}, "row must be an integer"),
    ({"row": True}, "row must be an integer"),
    ({"row": 7}, "has no row 7"),
    ({"label_index": 1}, "label_index 1, but classes.json names 1 classes"),
    ({"label_index": -2}, "label_index must be an integer >= 0"),
    ({"id": 3}, "id must be a non-empty string"),
    ({"shard": None}, "shard must be a non-empty string"),
])
def test_manifest_lines_are_checked_not_trusted(tmp_path, change, message):
    manifest = one_image_dataset(tmp_path / "data", classes=["x"])
    lines = [json.loads(line) for line in manifest.read_text().splitlines()]
    lines[1].update(change)
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    with pytest.raises(DatasetFormatError, match=message):
        ProcessedDataset(tmp_path / "data")


def test_a_bad_manifest_line_is_named_by_its_number(tmp_path):
    manifest = one_image_dataset(tmp_path / "data")
    good = manifest.read_text()
    manifest.write_text(good + "{not json\n")
    with pytest.raises(DatasetFormatError, match="manifest.jsonl line 3 is not valid JSON"):
        ProcessedDataset(tmp_path / "data")
    lines = [json.loads(line) for line in good.splitlines()]
    lines[1]["id"] = 3
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    with pytest.raises(DatasetFormatError,
                       match="manifest.jsonl line 2: id must be a non-empty string"):
        ProcessedDataset(tmp_path / "data")


CAPPED_LOAD = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the cap fails instead of killing
resource.setrlimit(resource.RLIMIT_FSIZE, (4 << 20, 4 << 20))
from shared.models import UnsafeArtifactError, load_artifact, load_config
for loader in (load_artifact, load_config):
    try:
        loader(sys.argv[1])
    except UnsafeArtifactError as exc:
        print("refused:", exc)
"""


def test_a_model_json_in_a_tarball_is_size_checked_before_a_byte_of_it_is_written(
        model_files, tmp_path):
    """With the process unable to write a file over 4 MB, a 20 MB model.json must be refused
    from the archive's header, not found too big after extracting it."""
    config = json.loads(model_files["model.json"])
    config["extra"] = {"padding": "x" * (20 * 1024 * 1024)}
    tarball = tmp_path / "model.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        for info, data in (entry("model.safetensors", model_files["model.safetensors"]),
                           entry("model.json", json.dumps(config).encode())):
            tar.addfile(info, io.BytesIO(data))
    result = subprocess.run([sys.executable, "-c", CAPPED_LOAD, str(tarball)], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    refusals = result.stdout.splitlines()
    assert len(refusals) == 2 and all("larger than the 10,485,760 it may be" in r for r in refusals)
