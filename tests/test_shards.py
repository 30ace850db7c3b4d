"""Rows decoded in place into a dataset's shards (`ShardFiles`, `DatasetWriter.reserve`)."""

import pickle
from functools import partial

import numpy as np
import pytest
from PIL import Image

from shared.data import DatasetWriter, ProcessedDataset, decode_to_pool
from shared.data.dataset import shard_name
from shared.data.discovery import ImageFile
from shared.data.parallel import decode_images
from shared.data.shards import ShardFiles


def images(n, size=8, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_rows_span_files_and_truncating_cuts_files_in_place(tmp_path):
    data = images(10)
    store = ShardFiles.create(tmp_path, partial(shard_name, host=None), 3, 10, 4, (8, 8, 3))
    assert [p.name for p in store.paths] == ["shard-00003.npy", "shard-00004.npy",
                                             "shard-00005.npy"]
    for i, image in enumerate(data):
        store[i] = image
    assert [np.load(p).shape[0] for p in store.paths] == [4, 4, 2]
    last = store.paths[-1]
    store.truncate(5)
    assert not last.exists() and len(store) == 5
    kept = [np.load(p) for p in store.paths]
    assert [k.shape for k in kept] == [(4, 8, 8, 3), (1, 8, 8, 3)]
    assert np.array_equal(np.concatenate(kept), data[:5])
    assert store.paths[-1].stat().st_size == 128 + 8 * 8 * 3  # cut, not left sparse at full size
    with pytest.raises(IndexError):
        store[5]


def test_a_store_pickles_small_however_many_files_it_spans(tmp_path):
    """A worker pool pickles it with every batch of work, so its size must not grow with the data."""
    small = ShardFiles(tmp_path, partial(shard_name, host="algo-2"), 0, 10, 4, (224, 224, 3))
    large = ShardFiles(tmp_path, partial(shard_name, host="algo-2"), 0, 10**6, 4, (224, 224, 3))
    assert len(pickle.dumps(large)) < len(pickle.dumps(small)) + 8 < 500


def photos(folder, count, bad):
    """`count` PNGs of distinct sizes, with unreadable files at the indices in `bad`."""
    rng = np.random.default_rng(1)
    folder.mkdir()
    files = []
    for i in range(count):
        path = folder / f"{i:02d}.png"
        if i in bad:
            path.write_bytes(b"not an image")
        else:
            Image.fromarray(rng.integers(0, 256, (20 + i, 30, 3), dtype=np.uint8)).save(path)
        files.append(ImageFile(path, path.name, "a"))
    return files


@pytest.mark.parametrize("workers", [1, 2])
def test_decoding_into_reserved_shards_closes_the_gaps_across_files(tmp_path, workers):
    # Bad files at the start, inside, and at the end of 4-row shards: good rows move across files.
    files = photos(tmp_path / "in", 18, bad={0, 5, 8, 9, 17})
    with DatasetWriter(tmp_path / "out", 8, classes=["a"], max_shard_mb=0.001) as writer:
        assert writer.rows_per_shard == 4
        pool = decode_to_pool(files, size=8, policy="crop", workers=workers,
                              into=writer.reserve(len(files)))
        for f in pool.files:
            writer.add_reserved(f.relpath, str(f.path), f.label)
        writer.commit({})
    ds = ProcessedDataset(tmp_path / "out")
    good = [f for i, f in enumerate(files) if i not in {0, 5, 8, 9, 17}]
    assert ds.ids == [f.relpath for f in good] and len(pool.skipped) == 5
    expected = [d.image for d in decode_images([f.path for f in good], 8, "crop")]
    assert all(np.array_equal(ds.image(i), e) for i, e in enumerate(expected))
    shards = sorted(p.name for p in (tmp_path / "out").glob("shard-*.npy"))
    assert shards == [f"shard-0000{k}.npy" for k in range(4)]  # 13 rows, nothing else
    assert [np.load(tmp_path / "out" / s).shape[0] for s in shards] == [4, 4, 4, 1]


def test_images_added_after_reserved_rows_go_to_the_next_shards(tmp_path):
    data = images(7)
    with DatasetWriter(tmp_path / "out", 8, max_shard_mb=0.001) as writer:
        store = writer.reserve(4)
        for i in range(3):
            store[i] = data[i]
        store.truncate(3)
        for i in range(3):
            writer.add_reserved(f"r{i}", "src")
        for i in range(3, 7):
            writer.add(data[i], f"a{i}", "src")
        writer.commit({})
    ds = ProcessedDataset(tmp_path / "out")
    assert ds.ids == ["r0", "r1", "r2", "a3", "a4", "a5", "a6"]
    assert np.array_equal(ds.images(), data)
    assert len(list((tmp_path / "out").glob("shard-*.npy"))) == 2


def test_reserved_rows_left_unnamed_fail_the_commit_and_publish_nothing(tmp_path):
    with pytest.raises(ValueError, match="1 of 3 reserved rows were not named"):
        with DatasetWriter(tmp_path / "out", 8) as writer:
            writer.reserve(3)
            writer.add_reserved("x", "src")
            writer.add_reserved("y", "src")
            writer.commit({})
    assert list(tmp_path.iterdir()) == []  # no output, no staging folder left behind


def test_naming_more_images_than_reserved_rows_is_refused(tmp_path):
    with DatasetWriter(tmp_path / "out", 8) as writer:
        writer.reserve(1)
        writer.add_reserved("x", "src")
        with pytest.raises(ValueError, match="no reserved row is left for y"):
            writer.add_reserved("y", "src")
        writer.abort()
