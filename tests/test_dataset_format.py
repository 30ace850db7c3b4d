import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from shared.data import DatasetFormatError, DatasetWriter, ProcessedDataset
from shared.data.dataset import rows_as_block
from tests.conftest import ROOT


def images(n, size=16, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_round_trip_with_bounded_shards(tmp_path):
    data = images(25)
    out = tmp_path / "train"
    writer = DatasetWriter(out, 16, classes=["a", "b"], max_shard_mb=0.01)  # ~12 images/shard
    for i, image in enumerate(data):
        writer.add(image, f"img-{i}", f"src/{i}.png", "ab"[i % 2])
    writer.commit({"note": "test"})
    shards = sorted(out.glob("shard-*.npy"))
    assert len(shards) == 3 and all(p.stat().st_size <= 10_000 for p in shards)
    ds = ProcessedDataset(out)
    assert len(ds) == 25 and ds.classes == ["a", "b"] and ds.image_shape == (16, 16, 3)
    for i in range(25):
        image, label, image_id = ds[i]
        assert np.array_equal(image, data[i]) and label == i % 2 and image_id == f"img-{i}"
    assert ds.labelled and list(ds.labels[:4]) == [0, 1, 0, 1]
    assert np.array_equal(ds.images([3, 4]), data[3:5])
    assert json.loads((out / "report.json").read_text()) == {"note": "test"}


def test_consecutive_rows_of_one_array_are_written_without_a_copy_and_others_are_stacked(
        tmp_path):
    pool = np.lib.format.open_memmap(tmp_path / "pool.npy", mode="w+", dtype=np.uint8,
                                     shape=(12, 8, 8, 3))
    pool[:] = images(12, size=8)
    other = images(3, size=8, seed=1)
    cases = {"consecutive": [pool[i] for i in range(3, 9)],
             "a gap": [pool[i] for i in (3, 4, 6)],
             "reversed": [pool[i] for i in (5, 4, 3)],
             "another array": [pool[3], other[0], pool[5]],
             "copies": [pool[i].copy() for i in range(3, 6)],
             "a strided view": [pool[:, ::2][i] for i in range(3, 6)],
             "transposed rows": [pool[i].transpose(1, 0, 2) for i in range(3, 6)]}
    for name, rows in cases.items():
        block = rows_as_block(rows)
        assert np.array_equal(block, np.stack(rows)), name
        assert np.shares_memory(block, pool) == (name == "consecutive"), name


def test_shards_are_memory_mapped(tmp_path):
    writer = DatasetWriter(tmp_path / "d", 8)
    writer.add(images(1, 8)[0], "x", "x.png")
    writer.commit({})
    ds = ProcessedDataset(tmp_path / "d")
    assert all(isinstance(s, np.memmap) for s in ds._shards.values())


def test_failure_while_writing_leaves_no_output_and_no_partial_folder(tmp_path):
    out = tmp_path / "train"
    with pytest.raises(RuntimeError):
        with DatasetWriter(out, 16, max_shard_mb=0.01) as writer:
            for i, image in enumerate(images(30)):
                writer.add(image, str(i), str(i))
            raise RuntimeError("crash")
    assert list(tmp_path.iterdir()) == []


def test_rewrite_replaces_the_previous_dataset_whole(tmp_path):
    out = tmp_path / "d"
    for count in (10, 3):
        writer = DatasetWriter(out, 16, max_shard_mb=0.01)
        for i, image in enumerate(images(count)):
            writer.add(image, str(i), str(i))
        writer.commit({})
    assert len(ProcessedDataset(out)) == 3 and len(list(out.glob("shard-*.npy"))) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["d"]


KILLED_WRITER = """
import sys, numpy as np
from pathlib import Path
from shared.data import DatasetWriter
w = DatasetWriter(Path(sys.argv[1]), 16, max_shard_mb=0.01)
for i in range(10**6):
    w.add(np.zeros((16, 16, 3), np.uint8), str(i), str(i))
    if i == 100:
        print("writing", flush=True)
"""


def test_sigkill_mid_write_leaves_nothing_that_reads_as_complete(tmp_path):
    out = tmp_path / "train"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(out)], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout.readline().strip() == "writing"
    time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert not out.exists()
    with pytest.raises(DatasetFormatError, match="does not exist"):
        ProcessedDataset(out)
    partial = [p for p in tmp_path.iterdir() if p.name.startswith(".train.partial")]
    assert len(partial) == 1 and not (partial[0] / "manifest.jsonl").exists()


def test_per_host_parts_merge_into_one_dataset(tmp_path):
    merged = tmp_path / "merged"
    merged.mkdir()
    for host, offset in (("algo-1", 0), ("algo-2", 5)):
        part = tmp_path / host
        writer = DatasetWriter(part, 16, host=host)
        for i in range(5):
            writer.add(images(1, seed=offset + i)[0], f"{offset + i}", "s")
        writer.commit({})
        for f in part.iterdir():
            os.replace(f, merged / f.name)
    ds = ProcessedDataset(merged)
    assert sorted(ds.ids, key=int) == [str(i) for i in range(10)]
    assert not ds.labelled


def test_a_folder_without_manifest_or_with_a_missing_shard_is_refused(tmp_path):
    (tmp_path / "x").mkdir()
    with pytest.raises(DatasetFormatError, match="no manifest.jsonl"):
        ProcessedDataset(tmp_path / "x")
    writer = DatasetWriter(tmp_path / "y", 16)
    writer.add(images(1)[0], "a", "a")
    writer.commit({})
    next((tmp_path / "y").glob("shard-*.npy")).unlink()
    with pytest.raises(DatasetFormatError, match="missing"):
        ProcessedDataset(tmp_path / "y")


def test_writer_refuses_wrong_shapes_unknown_labels_and_duplicate_ids(tmp_path):
    with DatasetWriter(tmp_path / "d", 16, classes=["a"]) as writer:
        with pytest.raises(ValueError, match="expected uint8"):
            writer.add(np.zeros((8, 8, 3), np.uint8), "x", "x")
        with pytest.raises(ValueError, match="not one of the classes"):
            writer.add(images(1)[0], "x", "x", "zebra")
        writer.add(images(1)[0], "x", "x", "a")
        with pytest.raises(ValueError, match="duplicate image id"):
            writer.add(images(1)[0], "x", "x", "a")
        writer.abort()
