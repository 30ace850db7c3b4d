"""The processing component through its real entrypoint, on the digits and on deliberately bad data."""

import hashlib
import json
import multiprocessing.pool
import pickle
import shutil

import numpy as np
import pytest
from PIL import Image

from processing.augment import augment_rows
from shared.data import ProcessedDataset, decode_images
from tests.conftest import run_entrypoint, write_json

SPLITS = ("train", "validation", "test")


def outputs(base):
    return {s: ProcessedDataset(base / "processing" / "output" / s) for s in SPLITS}


def report(base):
    return json.loads((base / "processing" / "output" / "report" / "report.json").read_text())


def message(base):
    return (base / "output" / "message").read_text()


@pytest.fixture(scope="module")
def processed_digits(digits_folder, tmp_path_factory):
    base = tmp_path_factory.mktemp("opt_ml")
    shutil.copytree(digits_folder, base / "processing" / "input" / "data")
    result = run_entrypoint("processing", "train", "--image-size", "32", "--no-hflip",
                            "--augment-copies", "1", base=base)
    assert result.returncode == 0, result.stderr
    return base


def test_digits_are_split_stratified_with_the_same_classes_everywhere(processed_digits):
    data = outputs(processed_digits)
    for ds in data.values():
        assert ds.classes == [str(d) for d in range(10)] and ds.image_shape == (32, 32, 3)
    originals = {s: [r for r in ds.records if "#aug" not in r.id] for s, ds in data.items()}
    assert sum(len(r) for r in originals.values()) == 1797
    for split, fraction in (("validation", 0.15), ("test", 0.15)):
        counts = np.bincount([r.label_index for r in originals[split]], minlength=10)
        assert abs(len(originals[split]) - 1797 * fraction) < 15
        assert counts.min() >= 15 and counts.max() <= 32  # every class, in proportion


def test_no_image_is_in_two_splits(processed_digits):
    data = outputs(processed_digits)
    sources = [{r.source for r in ds.records} for ds in data.values()]
    assert not (sources[0] & sources[1]) and not (sources[0] & sources[2])
    hashes = [{hashlib.sha256(ds.image(i).tobytes()).hexdigest() for i in range(len(ds))
               if "#aug" not in ds.records[i].id} for ds in data.values()]
    assert not (hashes[1] & hashes[2]) and not (hashes[0] & hashes[2])


def test_only_training_images_are_augmented_one_copy_each(processed_digits):
    data = outputs(processed_digits)
    train_ids = data["train"].ids
    originals = [i for i in train_ids if "#aug" not in i]
    assert len(train_ids) == 2 * len(originals)
    assert all(f"{i}#aug1" in set(train_ids) for i in originals[:50])
    assert not any("#aug" in i for s in ("validation", "test") for i in data[s].ids)
    ds = data["train"]
    changed = [not np.array_equal(ds.image(2 * k), ds.image(2 * k + 1)) for k in range(50)]
    assert sum(changed) >= 48  # augmentation really alters the pixels


def test_images_match_the_source_files_resized(processed_digits, digits_folder):
    ds = outputs(processed_digits)["test"]
    record = ds.records[0]
    source = np.asarray(Image.open(digits_folder / record.source).convert("RGB"))
    assert np.array_equal(ds.image(0), source)  # 32 -> 32: unchanged pixels
    assert ds.classes[record.label_index] == record.source.split("/")[0]


def test_report_lists_counts_sizes_and_augmentation(processed_digits):
    r = report(processed_digits)
    assert r["images_found"] == 1797 and r["images_used"] == 1797 and r["skipped"] == []
    assert r["image_sizes"]["width"] == {"min": 32, "max": 32, "mean": 32, "median": 32}
    assert r["augmentation"]["copies"] == 1 and "Affine" in r["augmentation"]["pipeline"]
    assert "HorizontalFlip" not in r["augmentation"]["pipeline"]
    assert sum(r["class_counts"]["test"].values()) == len(outputs(processed_digits)["test"])


def test_running_twice_gives_identical_output(processed_digits, tmp_path):
    again = tmp_path / "again"
    shutil.copytree(processed_digits / "processing" / "input", again / "processing" / "input")
    result = run_entrypoint("processing", "train", "--image-size", "32", "--no-hflip",
                            "--augment-copies", "1", "--workers", "1", base=again)
    assert result.returncode == 0, result.stderr
    for split in SPLITS:
        first = processed_digits / "processing" / "output" / split
        second = again / "processing" / "output" / split
        for name in [p.name for p in first.iterdir()]:
            if name != "report.json":
                assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_augmentation_sends_workers_row_numbers_not_images(monkeypatch, tmp_path):
    """The images once travelled with every chunk of work: time grew with the square of the data."""
    sent = []
    imap = multiprocessing.pool.Pool.imap

    def spy(self, func, iterable, chunksize=1):
        items = list(iterable)
        sent.append(len(pickle.dumps((func, items[:chunksize]))))
        return imap(self, func, items, chunksize)

    monkeypatch.setattr(multiprocessing.pool.Pool, "imap", spy)
    images = np.random.default_rng(0).integers(0, 256, (300, 32, 32, 3), dtype=np.uint8)
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    pooled = list(augment_rows(images, list(range(0, 300, 2)), 2, 7, hflip=True, workers=2,
                               scratch=tmp_path / "a"))
    serial = list(augment_rows(images, list(range(0, 300, 2)), 2, 7, hflip=True, workers=1,
                               scratch=tmp_path / "b"))
    assert len(sent) == 1 and sent[0] < 5_000  # the images alone are 900 kB
    assert [row for row, _ in pooled] == list(range(0, 300, 2))
    assert all(np.array_equal(a, b) and a.shape == (2, 32, 32, 3)
               for (_, a), (_, b) in zip(pooled, serial, strict=True))


def make_messy_dataset(root):
    """3 classes x 8 images, plus every kind of bad file and a cross-class duplicate."""
    rng = np.random.default_rng(0)
    for c, name in enumerate(["ant", "bee", "cow"]):
        for i in range(8):
            pixels = rng.integers(0, 256, (40 + 4 * i, 30, 3), dtype=np.uint8)
            pixels[..., c] = 255
            (root / name).mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    (root / "ant" / "zero.png").write_bytes(b"")
    (root / "bee" / "garbage.jpg").write_bytes(b"this is not a jpeg at all")
    good = (root / "cow" / "0.png").read_bytes()
    (root / "cow" / "truncated.png").write_bytes(good[: len(good) // 2])
    shutil.copy(root / "ant" / "3.png", root / "bee" / "copy-of-ant-3.png")
    (root / "ant" / ".DS_Store").write_bytes(b"junk")
    (root / "ant" / "notes.txt").write_text("ignored")
    Image.new("CMYK", (20, 20)).save(root / "cow" / "cmyk.jpg")


def test_bad_files_are_skipped_and_reported_and_duplicates_kept_out_of_other_splits(sm_base):
    make_messy_dataset(sm_base / "processing" / "input" / "data")
    result = run_entrypoint("processing", "train", "--image-size", "24", "--augment-copies", "0",
                            "--validation-fraction", "0.25", "--test-fraction", "0.25",
                            base=sm_base)
    assert result.returncode == 0, result.stderr
    r = report(sm_base)
    assert sorted(s["path"] for s in r["skipped"]) == [
        "ant/zero.png", "bee/garbage.jpg", "cow/truncated.png"]
    assert all(s["reason"] for s in r["skipped"])
    assert r["duplicates"] == [{"path": "bee/copy-of-ant-3.png", "duplicate_of": "ant/3.png",
                                "action": "dropped"}]
    data = outputs(sm_base)
    ids = [i for ds in data.values() for i in ds.ids]
    assert len(ids) == len(set(ids)) == 25  # 24 good + the CMYK one, minus nothing else
    assert "bee/copy-of-ant-3.png" not in ids
    assert all(len(data[s]) > 0 for s in SPLITS)


def test_existing_split_folders_are_kept_and_validation_is_carved_from_train(sm_base):
    root = sm_base / "processing" / "input" / "data"
    make_messy_dataset(root / "seg_train")
    make_messy_dataset(root / "seg_test")
    for cls in ("ant", "bee", "cow"):  # make test images distinct from train ones
        for path in (root / "seg_test" / cls).glob("[0-9].png"):
            arr = np.asarray(Image.open(path)).copy()
            arr[0, 0] = [1, 2, 3]
            Image.fromarray(arr).save(path)
    result = run_entrypoint("processing", "train", "--image-size", "24", "--augment-copies", "0",
                            "--split-dirs", "train=seg_train,test=seg_test", base=sm_base)
    assert result.returncode == 0, result.stderr
    data = outputs(sm_base)
    assert all(i.startswith("seg_test/") for i in data["test"].ids)
    assert len(data["test"]) == 24
    assert data["validation"].ids and all(i.startswith("seg_train/") for i in
                                          data["validation"].ids + data["train"].ids)
    assert report(sm_base)["presplit_folders"] == {"train": "seg_train", "test": "seg_test"}


def test_class_too_small_to_split_goes_to_train_and_is_reported(sm_base):
    root = sm_base / "processing" / "input" / "data"
    for cls, n in (("big", 10), ("tiny", 2)):
        for i in range(n):
            (root / cls).mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (10, 10), (i * 20, 0, 100 if cls == "big" else 200)).save(
                root / cls / f"{i}.png")
    result = run_entrypoint("processing", "train", "--image-size", "16", "--augment-copies", "2",
                            base=sm_base)
    assert result.returncode == 0, result.stderr
    assert report(sm_base)["small_classes"] == [
        {"class": "tiny", "images": 2, "action": "too few images to split: all used for training"}]
    train = outputs(sm_base)["train"]
    assert sum(1 for r in train.records if r.label == "tiny") == 6  # 2 originals + 2x2 copies


@pytest.mark.parametrize("setup,expected", [
    ("empty", "no labelled images"),
    ("one_class", "at least two classes"),
    ("mostly_bad", "could not be used, more than the allowed 50%"),
    ("all_bad", "none of the 3 input images could be decoded"),
])
def test_unusable_input_fails_with_a_reason(sm_base, setup, expected):
    root = sm_base / "processing" / "input" / "data"
    root.mkdir(parents=True)
    if setup == "one_class":
        for i in range(5):
            (root / "only").mkdir(exist_ok=True)
            Image.new("RGB", (8, 8), (i, i, i)).save(root / "only" / f"{i}.png")
    if setup == "mostly_bad":
        for cls in ("a", "b"):
            (root / cls).mkdir()
            Image.new("RGB", (8, 8)).save(root / cls / "ok.png")
            for i in range(3):
                (root / cls / f"bad{i}.png").write_bytes(b"nope")
    if setup == "all_bad":
        for cls in ("a", "b", "c"):
            (root / cls).mkdir()
            (root / cls / "bad.png").write_bytes(b"")
    result = run_entrypoint("processing", "train", "--image-size", "16", base=sm_base)
    assert result.returncode != 0
    assert expected in message(sm_base)
    assert not (sm_base / "processing" / "output" / "train").exists()


def test_bad_flag_fails_with_a_reason(sm_base):
    result = run_entrypoint("processing", "train", "--resize-policy", "stretch", base=sm_base)
    assert result.returncode == 2
    assert "bad arguments" in message(sm_base) and "crop" in message(sm_base)


def test_serve_keeps_labels_bounds_shards_and_skips_bad_files(sm_base):
    make_messy_dataset(sm_base / "processing" / "input" / "data")
    result = run_entrypoint("processing", "serve", "--image-size", "64", "--max-shard-mb", "0.05",
                            base=sm_base)
    assert result.returncode == 0, result.stderr
    out = sm_base / "processing" / "output" / "data"
    ds = ProcessedDataset(out)
    assert len(ds) == 26 and ds.classes == ["ant", "bee", "cow"] and ds.labelled
    assert all(p.stat().st_size <= 50_000 for p in out.glob("shard-*.npy"))
    assert len(list(out.glob("shard-*.npy"))) == 7  # 4 images of 12,288 bytes per shard
    sources = [sm_base / "processing" / "input" / "data" / i for i in ds.ids]
    assert all(np.array_equal(ds.image(k), d.image)  # decoded in place, gaps of bad files closed
               for k, d in enumerate(decode_images(sources, 64, "crop")))
    assert not list(out.parent.glob(".*"))  # no scratch or staging folder left
    r = report(sm_base)
    assert r["mode"] == "serve" and len(r["skipped"]) == 3
    assert r["duplicates"][0]["action"] == "kept"


def test_serve_on_an_unlabelled_tree(sm_base):
    root = sm_base / "processing" / "input" / "data"
    for i, rel in enumerate(["a.png", "x/b.jpg", "x/y/c.webp"]):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (50, 30), (i * 50, 0, 0)).save(root / rel)
    result = run_entrypoint("processing", "serve", "--image-size", "16", base=sm_base)
    assert result.returncode == 0, result.stderr
    ds = ProcessedDataset(sm_base / "processing" / "output" / "data")
    assert ds.ids == ["a.png", "x/b.jpg", "x/y/c.webp"] and not ds.labelled and ds.classes is None


def test_serve_on_several_hosts_splits_the_work_without_collisions(digits_folder, tmp_path):
    parts = []
    for host in ("algo-1", "algo-2"):
        base = tmp_path / host
        (base / "processing" / "input").mkdir(parents=True)
        (base / "processing" / "input" / "data").symlink_to(digits_folder)
        write_json(base / "config" / "resourceconfig.json",
                   {"current_host": host, "hosts": ["algo-1", "algo-2"]})
        result = run_entrypoint("processing", "serve", "--image-size", "16", base=base)
        assert result.returncode == 0, result.stderr
        parts.append(base / "processing" / "output" / "data")
    names = [{p.name for p in part.iterdir()} for part in parts]
    assert names[0] & names[1] == {"classes.json"}  # the one shared file is the same everywhere
    assert (parts[0] / "classes.json").read_text() == (parts[1] / "classes.json").read_text()
    merged = tmp_path / "merged"
    merged.mkdir()
    for part in parts:
        for f in part.iterdir():
            shutil.copy(f, merged / f.name)
    ds = ProcessedDataset(merged)
    assert len(ds) == 1797 and len(set(ds.ids)) == 1797
