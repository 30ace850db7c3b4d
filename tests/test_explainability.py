"""The explainability component: integrated gradients through the real entrypoint, and the library.

The digits runs use the model trained by the session's `trained_job`; small samples keep them
quick. The synthetic-patch test trains a tiny model in-process to show the attributions point at
the evidence, not just add up.
"""

import json
import re
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from explainability.__main__ import MODES
from explainability.config import ServeConfig
from explainability.sampling import equal_quotas, sample_indices
from shared.attribution import (
    COMPLETENESS_FLOOR,
    COMPLETENESS_TOLERANCE,
    FIRST_STEPS,
    MAX_STEPS,
    Explainer,
    IGSettings,
    attribution_key,
    auto_internal_batch_size,
    explained_function,
    image_id_of,
    make_baselines,
    mass_fraction,
)
from shared.attribution.completeness import relative_error
from shared.data import DatasetWriter, ProcessedDataset
from shared.models import ImageClassifier, ModelConfig, create_network, write_tarball
from shared.sagemaker.entrypoint import build_parser, config_from_flags
from shared.schema import SchemaError
from tests.conftest import run_entrypoint, write_json

DIGITS = [str(d) for d in range(10)]


def explanations(base):
    return base / "processing" / "output" / "explanations"


def summary(base):
    return json.loads((explanations(base) / "summary.json").read_text())


def message(base):
    return (base / "output" / "message").read_text()


def write_dataset(folder, source: ProcessedDataset, indices, classes=None, labels=None):
    """A processed data set of `source`'s images at `indices`, with the given labels (or none)."""
    with DatasetWriter(folder, source.image_shape[0], classes=classes) as writer:
        for n, i in enumerate(indices):
            record = source.records[i]
            writer.add(source.image(i), record.id, record.source,
                       None if labels is None else labels[n])
        writer.commit({})
    return folder


def job_base(tmp_path, data, model):
    base = tmp_path / "opt_ml"
    (base / "processing" / "input").mkdir(parents=True)
    (base / "processing" / "input" / "data").symlink_to(data)
    (base / "processing" / "input" / "model").symlink_to(model)
    return base


def stored_sum_matches(record, stored, key_field="key"):
    """The stored float16 attributions are the record's: they add up to output - baseline_output
    + delta, up to float16 rounding (the record's delta holds completeness to its tolerance)."""
    values = stored[record[key_field]].astype(np.float64)
    gap = record["output"] - record["baseline_output"]
    return abs(values.sum() - (gap + record["delta"])) <= 1e-3 * np.abs(values).sum()


# ---- train mode on the digits, with three labels deliberately wrong -------------------------------

MISLABELLED = 3


@pytest.fixture(scope="module")
def train_run(trained_job, processed_small, tmp_path_factory):
    """40 validation digits (4 per class), 3 of them mislabelled so the model 'misclassifies' them."""
    validation = ProcessedDataset(processed_small / "validation")
    picked = [i for c in range(10) for i in np.flatnonzero(validation.labels == c)[:4]]
    labels = [DIGITS[validation.labels[i]] for i in picked]
    for n in (0, 13, 26):  # a 0, a 3 and a 6 labelled as the next digit
        labels[n] = DIGITS[(int(labels[n]) + 1) % 10]
    tmp = tmp_path_factory.mktemp("explain_train")
    data = write_dataset(tmp / "data", validation, picked, DIGITS, labels)
    base = job_base(tmp, data, trained_job[0] / "model")
    result = run_entrypoint("explainability", "train", "--max-images", "40", base=base)
    assert result.returncode == 0, result.stderr[-3000:]
    return base, summary(base)


def test_completeness_holds_for_every_explained_image_and_the_stored_arrays(train_run):
    base, s = train_run
    assert s["totals"]["images_explained"] == 40 and s["totals"]["completeness_failed"] == 0
    with np.load(explanations(base) / "attributions.npz") as stored:
        for record in s["images"]:
            assert record["completeness_ok"] and stored_sum_matches(record, stored)
            if "true_class" in record:
                assert record["true_class"]["completeness_ok"]
                assert stored_sum_matches(record["true_class"], stored)
            assert stored[record["key"]].shape == (32, 32, 3)
            assert stored[record["key"]].dtype == np.float16


def test_convergence_delta_is_small_next_to_the_explained_logit_gap(train_run):
    _, s = train_run
    gaps = np.array([abs(r["output"] - r["baseline_output"]) for r in s["images"]])
    deltas = np.array([abs(r["delta"]) for r in s["images"]])
    # the explained logit gap is mostly not trivially small (a gap under the floor is judged
    # against the floor: how small it may be depends on the trained model)
    assert np.mean(gaps > COMPLETENESS_FLOOR) >= 0.9
    errors = relative_error(deltas, gaps)  # the job's rule: the gap floored at COMPLETENESS_FLOOR
    assert errors.max() <= COMPLETENESS_TOLERANCE
    assert np.mean(errors) < COMPLETENESS_TOLERANCE / 2  # most converge well past it
    assert s["totals"]["max_abs_delta"] == pytest.approx(deltas.max())
    assert s["totals"]["max_relative_error"] == pytest.approx(errors.max())


def test_summary_lists_label_prediction_probability_and_delta_per_image(train_run):
    _, s = train_run
    assert len(s["images"]) == 40 and len({r["id"] for r in s["images"]}) == 40
    for r in s["images"]:
        assert r["label"] in DIGITS and r["prediction"] in DIGITS
        assert 0.0 < r["probability"] <= 1.0 and isinstance(r["delta"], float)
        assert r["key"] == attribution_key(r["id"]) and image_id_of(r["key"]) == r["id"]
    assert s["settings"]["n_steps"] == "auto" and s["settings"]["max_steps"] == MAX_STEPS
    assert s["settings"]["method"] == "trapezoid, nested grids"
    assert s["settings"]["internal_batch_size_chosen"] == "auto"
    assert s["settings"]["internal_batch_size"] >= 1


def test_auto_steps_are_recorded_per_image_and_summed_up_in_the_totals(train_run):
    base, s = train_run
    steps = np.array([r["steps"] for r in s["images"]])
    true_class_steps = [r["true_class"]["steps"] for r in s["images"] if "true_class" in r]
    assert set(steps) | set(true_class_steps) <= {17, 33, 65, 129, 257, 513, 1025}
    assert steps.min() == FIRST_STEPS < steps.max()  # easy images stop early, others go on
    t = s["totals"]
    assert t["mean_steps"] == pytest.approx(steps.mean()) and t["most_steps"] == steps.max()
    assert t["steps_capped"] == t["completeness_failed"] == 0
    assert "mean steps" in (explanations(base) / "index.html").read_text()


def test_misclassified_images_get_true_class_attributions_and_lead_the_gallery(train_run):
    base, s = train_run
    wrong = [r for r in s["images"] if not r["correct"]]
    assert s["totals"]["misclassified"] == len(wrong) >= MISLABELLED
    with np.load(explanations(base) / "attributions.npz") as stored:
        for r in wrong:
            assert r["true_class"]["key"] == attribution_key(r["id"], true_class=True)
            assert r["true_class"]["key"] in stored.files
            assert r["true_class"]["probability"] < r["probability"]
        assert len(stored.files) == 40 + len(wrong)
    assert not any("true_class" in r for r in s["images"] if r["correct"])
    assert set(s["gallery"]["images"][:len(wrong)]) == {r["id"] for r in wrong}
    page = (explanations(base) / "index.html").read_text()
    assert page.index("Misclassified") < page.index("Other predictions")


def test_heatmaps_are_readable_three_panel_pngs_linked_from_the_gallery(train_run):
    base, s = train_run
    drawn = [r for r in s["images"] if "overlay" in r]
    assert len(drawn) == len(s["gallery"]["images"]) == 24
    page = (explanations(base) / "index.html").read_text()
    for r in drawn:
        with Image.open(explanations(base) / r["overlay"]) as png:
            png.load()
            assert png.format == "PNG" and png.width >= 2 * png.height and png.height >= 200
        assert f'href="{r["overlay"]}"' in page
    assert len(list((explanations(base) / "overlays").glob("*.png"))) == 24


def test_train_mode_writes_per_class_mean_maps_as_arrays_and_pngs(train_run):
    base, s = train_run
    classes = s["class_means"]["classes"]
    assert list(classes) == DIGITS
    assert sum(c["images"] for c in classes.values()) == 40 - s["totals"]["misclassified"]
    with np.load(explanations(base) / "class_means.npz") as means:
        assert sorted(means.files) == DIGITS
        for name in DIGITS:
            m = means[name]
            assert m.shape == (32, 32) and 0 < np.abs(m).sum() <= 1 + 1e-5
            with Image.open(explanations(base) / classes[name]["png"]) as png:
                png.load()


def test_the_output_folder_is_published_whole_and_nothing_else_is_left(train_run):
    base, _ = train_run
    assert [p.name for p in (base / "processing" / "output").iterdir()] == ["explanations"]
    assert not (base / "output" / "message").exists()


# ---- serve mode -------------------------------------------------------------------------------------

def test_serve_maps_a_subset_of_classes_by_name_from_a_tarball(trained_job, processed_small, tmp_path):
    test = ProcessedDataset(processed_small / "test")
    picked = [i for i in range(len(test)) if test.records[i].label in ("3", "7")]
    data = write_dataset(tmp_path / "data", test, picked, ["3", "7"],
                         [test.records[i].label for i in picked])
    tarball = write_tarball(trained_job[0] / "model", tmp_path / "model" / "model.tar.gz")
    base = job_base(tmp_path, data, tarball.parent)
    result = run_entrypoint("explainability", "serve", "--max-images", "8", "--baseline", "blur",
                            "--n-steps", "50", "--method", "riemann_trapezoid",
                            "--internal-batch-size", "40",
                            "--gallery-size", "3", base=base)
    assert result.returncode == 0, result.stderr[-3000:]
    s = summary(base)
    assert s["mode"] == "serve" and "class_means" not in s
    assert not (explanations(base) / "class_means.npz").exists()
    assert sorted(r["label"] for r in s["images"]) == ["3"] * 4 + ["7"] * 4  # stratified
    assert sum(r["correct"] for r in s["images"]) >= 7  # labels mapped onto the model's classes
    assert s["settings"]["internal_batch_size"] == 40 and s["settings"]["baseline"] == "blur"
    assert s["settings"]["n_steps"] == 50 and s["settings"]["max_steps"] is None
    assert s["settings"]["method"] == "riemann_trapezoid" and s["totals"]["steps_capped"] is None
    assert {r["steps"] for r in s["images"]} == {50}
    assert all(r["completeness_ok"] for r in s["images"])
    with np.load(explanations(base) / "attributions.npz") as stored:
        assert {image_id_of(k) for k in stored.files} == {r["id"] for r in s["images"]}
        assert all("/" in r["id"] and "/" not in r["key"] for r in s["images"])
    assert len(list((explanations(base) / "overlays").glob("*.png"))) == 3


def test_serve_explains_unlabelled_images_with_smoothgrad_and_a_noise_baseline(
        trained_job, processed_small, tmp_path):
    test = ProcessedDataset(processed_small / "test")
    data = write_dataset(tmp_path / "data", test, [0, 1, 2])
    base = job_base(tmp_path, data, trained_job[0] / "model")
    result = run_entrypoint("explainability", "serve", "--n-steps", "16", "--noise-tunnel",
                            "--baseline", "noise", "--gallery-size", "2", base=base)
    assert result.returncode == 0, result.stderr[-3000:]
    s = summary(base)
    assert s["settings"]["noise_tunnel"] and s["settings"]["noise_tunnel_samples"] == 8
    assert len(s["images"]) == 3 and not any("label" in r or "correct" in r for r in s["images"])
    assert s["totals"]["misclassified"] == 0 and s["totals"]["accuracy"] is None
    assert all(np.isfinite(r["delta"]) for r in s["images"])
    with np.load(explanations(base) / "attributions.npz") as stored:
        assert all(np.abs(stored[r["key"]]).sum() > 0 for r in s["images"])


def test_images_that_reach_the_step_cap_are_counted_logged_and_flagged(trained_job,
                                                                         processed_small, tmp_path):
    base = job_base(tmp_path, processed_small / "test", trained_job[0] / "model")
    result = run_entrypoint("explainability", "serve", "--max-images", "30", "--max-steps", "17",
                            "--gallery-size", "0", base=base)
    assert result.returncode == 0, result.stderr[-3000:]
    s = summary(base)
    assert s["settings"]["max_steps"] == 17 and {r["steps"] for r in s["images"]} == {17}
    capped = [r for r in s["images"] if not r["completeness_ok"]]
    assert capped and all(r["relative_error"] > COMPLETENESS_TOLERANCE for r in capped)
    assert s["totals"]["steps_capped"] == s["totals"]["completeness_failed"] == len(capped)
    assert f"{len(capped)} images reached the step cap (17 steps)" in result.stderr
    assert "raise --max-steps" in result.stderr


def test_several_hosts_explain_disjoint_shares_of_one_sample(trained_job, processed_small, tmp_path):
    shares = []
    for host in ("algo-1", "algo-2"):
        base = job_base(tmp_path / host, processed_small / "test", trained_job[0] / "model")
        write_json(base / "config" / "resourceconfig.json",
                   {"current_host": host, "hosts": ["algo-1", "algo-2"]})
        result = run_entrypoint("explainability", "serve", "--max-images", "6", "--n-steps", "8",
                                "--gallery-size", "1", base=base)
        assert result.returncode == 0, result.stderr[-3000:]
        names = {p.name for p in explanations(base).iterdir()}
        assert {f"summary-{host}.json", f"attributions-{host}.npz", f"index-{host}.html"} <= names
        shares.append(json.loads((explanations(base) / f"summary-{host}.json").read_text()))
    ids = [{r["id"] for r in s["images"]} for s in shares]
    assert len(ids[0]) == len(ids[1]) == 3 and not ids[0] & ids[1]
    assert len({r["label"] for s in shares for r in s["images"]}) == 6  # one sample, stratified


# ---- bad input --------------------------------------------------------------------------------------

@pytest.fixture
def digits_job(trained_job, processed_small, tmp_path):
    """A job base dir with the digits model; the test supplies (or breaks) the data."""
    base = tmp_path / "opt_ml"
    (base / "processing" / "input").mkdir(parents=True)
    (base / "processing" / "input" / "model").symlink_to(trained_job[0] / "model")
    return base


def test_missing_model_fails_with_a_reason(processed_small, sm_base):
    (sm_base / "processing" / "input").mkdir(parents=True)
    (sm_base / "processing" / "input" / "data").symlink_to(processed_small / "test")
    result = run_entrypoint("explainability", "serve", base=sm_base)
    assert result.returncode != 0
    assert "no model at" in message(sm_base) and "model.tar.gz" in message(sm_base)
    assert not explanations(sm_base).exists()


@pytest.mark.parametrize("case,expected", [
    ("wrong_size", "are 16x16 but the model takes 32x32"),
    ("wrong_classes", "are not the model's"),
    ("empty", "holds no images"),
    ("not_a_dataset", "it holds the processed data sets test"),
])
def test_data_that_does_not_fit_the_model_fails_with_a_reason(digits_job, processed_small, case,
                                                              expected):
    data = digits_job / "processing" / "input" / "data"
    if case == "wrong_size":
        with DatasetWriter(data, 16, classes=DIGITS) as writer:
            writer.add(np.zeros((16, 16, 3), np.uint8), "a.png", "a.png", "1")
            writer.commit({})
    elif case == "wrong_classes":
        with DatasetWriter(data, 32, classes=["cat", "dog"]) as writer:
            writer.add(np.zeros((32, 32, 3), np.uint8), "a.png", "a.png", "cat")
            writer.commit({})
    elif case == "empty":
        DatasetWriter(data, 32, classes=DIGITS).commit({})
    else:
        data.mkdir()
        (data / "test").symlink_to(processed_small / "test")
    result = run_entrypoint("explainability", "train", base=digits_job)
    assert result.returncode != 0
    assert expected in message(digits_job)
    assert not explanations(digits_job).exists()


@pytest.mark.parametrize("flags,expected", [
    (("--method", "simpson"), "gausslegendre"),
    (("--n-steps", "fifty"), "--n-steps must be auto or an integer from 1 to 10000, not 'fifty'"),
    (("--n-steps", "0"), "--n-steps must be auto or an integer from 1 to 10000, not '0'"),
    (("--noise-tunnel",), "--noise-tunnel needs a fixed --n-steps N"),
    (("--n-steps", "auto", "--method", "gausslegendre"), "needs a fixed --n-steps N"),
    (("--max-steps", "16"), "--max-steps='16' is out of range"),
])
def test_bad_flag_fails_with_a_reason(sm_base, flags, expected):
    result = run_entrypoint("explainability", "train", *flags, base=sm_base)
    assert result.returncode == 2
    assert "bad arguments" in message(sm_base) and expected in message(sm_base)


@pytest.mark.parametrize("given,steps", [("auto", None), (" AUTO ", None), ("50", 50),
                                         ("1", 1), ("10000", 10_000)])
def test_n_steps_flag_takes_auto_or_a_count(given, steps):
    parser = build_parser("explainability", MODES, "")
    args = parser.parse_args(["serve", "--n-steps", given])
    assert config_from_flags(ServeConfig, args).n_steps == steps
    assert ServeConfig().n_steps is None  # auto is the default


@pytest.mark.parametrize("given", ["fifty", "-3", "1.5", "10001", "", "autos"])
def test_n_steps_flag_refuses_anything_else_naming_the_choices(given):
    args = build_parser("explainability", MODES, "").parse_args(["serve", "--n-steps", given])
    with pytest.raises(SchemaError, match="must be auto or an integer from 1 to 10000"):
        config_from_flags(ServeConfig, args)


# ---- the library: attributions mean something --------------------------------------------------------

SIZE = 16
PATCH = (slice(3, 7), slice(9, 14))  # 4 rows x 5 columns, off the diagonal: a transposed map misses


def patch_images(n, rng):
    """Uniform noise everywhere; only the patch's brightness (dark or bright) decides the class."""
    images = rng.integers(0, 256, (n, SIZE, SIZE, 3)).astype(np.uint8)
    classes = rng.integers(0, 2, n)
    level = np.where(classes == 1, 188, 68)[:, None, None, None]
    images[:, PATCH[0], PATCH[1]] = np.clip(level + rng.integers(-30, 30, (n, 4, 5, 3)), 0, 255)
    return images, classes


@contextmanager
def one_thread():
    """Tiny models run faster on one thread (and do not fight other jobs for the cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def train_patch_model(config) -> ImageClassifier:
    """Pointwise convolutions then a dense head: it can only learn *where* to look from the data."""
    torch.manual_seed(0)
    head = nn.Linear(8 * SIZE * SIZE, 2)
    nn.init.zeros_(head.weight)
    model = nn.Sequential(nn.Conv2d(3, 8, 1), nn.ReLU(), nn.Flatten(), head)
    forward = ImageClassifier(model, config)
    images, classes = patch_images(2048, np.random.default_rng(0))
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    y = torch.from_numpy(classes)
    optimiser = torch.optim.AdamW(model.parameters(), 3e-3, weight_decay=0.05)
    for _ in range(300):
        batch = torch.randint(0, len(x), (128,))
        loss = nn.functional.cross_entropy(forward(x[batch]), y[batch]) + 1e-3 * head.weight.abs().sum()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return forward.eval()


def test_attribution_mass_concentrates_on_the_patch_that_decides_the_class():
    config = ModelConfig("patch", ["dark", "bright"], SIZE, [0.5] * 3, [0.25] * 3)
    images, classes = patch_images(32, np.random.default_rng(1))
    with one_thread():
        explainer = Explainer(train_patch_model(config), IGSettings(n_steps=32),
                              device=torch.device("cpu"))
        predicted = explainer.predict(images).argmax(axis=1)
        a = explainer.attribute(images, predicted, np.arange(32))
    assert (predicted == classes).all()
    mask = np.zeros((SIZE, SIZE), bool)
    mask[PATCH] = True
    on_patch = np.array([mass_fraction(v, mask) for v in a.values])
    assert mask.mean() < 0.1  # the patch is under a tenth of the image ...
    assert on_patch.min() > 0.8 and on_patch.mean() > 0.9  # ... and holds most of the evidence
    assert a.completeness_ok.all()
    on_patch_sum = np.array([v[mask].sum() for v in a.values])
    # Brighter than the black baseline is evidence for "bright"; for "dark" black is darker still.
    assert (on_patch_sum[predicted == 1] > 0).all() and (on_patch_sum[predicted == 0] < 0).all()


def test_splitting_the_steps_into_internal_batches_gives_the_same_attributions():
    config = ModelConfig("resnet10t", ["dark", "bright"], SIZE, [0.5] * 3, [0.25] * 3)
    torch.manual_seed(0)
    model = ImageClassifier(create_network("resnet10t", 2), config).eval()
    images, _ = patch_images(2, np.random.default_rng(2))
    targets, positions = np.array([0, 1]), np.arange(2)
    split = Explainer(model, IGSettings(n_steps=8, internal_batch_size=5),  # 8 steps > 5
                      device=torch.device("cpu")).attribute(images, targets, positions)
    whole = Explainer(model, IGSettings(n_steps=8, internal_batch_size=64),
                      device=torch.device("cpu")).attribute(images, targets, positions)
    np.testing.assert_allclose(split.values, whole.values, rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(split.delta, whole.delta, rtol=1e-3, atol=1e-4)


def test_smoothgrad_is_seeded_and_complete_on_a_linear_model_however_it_is_batched():
    """IG is exact for a linear model, so any completeness gap would be a bookkeeping error."""
    config = ModelConfig("linear", ["a", "b"], 8, [0.5] * 3, [0.25] * 3)
    torch.manual_seed(0)
    model = ImageClassifier(nn.Sequential(nn.Flatten(), nn.Linear(192, 2)), config).eval()
    images = np.random.default_rng(3).integers(0, 256, (3, 8, 8, 3)).astype(np.uint8)
    state = torch.get_rng_state()
    runs = [Explainer(model, IGSettings(n_steps=8, noise_tunnel=True, internal_batch_size=b),
                      device=torch.device("cpu")).attribute(images, np.array([0, 1, 1]), np.arange(3))
            for b in (20, 20, 1000)]  # 20: one image per call, noise in 4 passes; 1000: all at once
    np.testing.assert_array_equal(runs[0].values, runs[1].values)
    assert torch.equal(state, torch.get_rng_state())  # the caller's random state is left alone
    for run in runs:
        assert run.delta.shape == (3,) and np.abs(run.delta).max() < 1e-3
    assert np.abs(runs[0].values).sum() > 0


# ---- the library: pieces ------------------------------------------------------------------------------

def test_noise_baselines_are_seeded_per_image_not_per_batch():
    images = torch.rand(4, 3, 8, 8) * 255
    whole = make_baselines("noise", images, [10, 11, 12, 13], seed=5)
    parts = torch.cat([make_baselines("noise", images[:1], [10], seed=5),
                       make_baselines("noise", images[1:], [11, 12, 13], seed=5)])
    assert torch.equal(whole, parts) and 0 <= whole.min() and whole.max() <= 255
    assert not torch.equal(whole, make_baselines("noise", images, [10, 11, 12, 13], seed=6))


def test_blur_baseline_keeps_colour_and_removes_detail():
    image = torch.zeros(1, 3, 32, 32)
    image[:, 0, ::2] = 255.0  # stripes in the red channel
    blurred = make_baselines("blur", image, [0])
    inside = blurred[:, 0, 10:-10, 10:-10]  # away from the replicated border
    assert inside.mean() == pytest.approx(127.5, abs=1.0) and inside.std() < 1.0
    assert float(blurred[:, 1:].abs().max()) < 1e-3


def test_black_baseline_is_zero_pixels():
    assert torch.equal(make_baselines("black", torch.full((2, 3, 4, 4), 9.0), [0, 1]),
                       torch.zeros(2, 3, 4, 4))


def test_keys_are_plain_names_and_reversible_for_any_id():
    for image_id in ("a.png", "x/y/c.webp#aug1", "we@ird %2F/name", "a.png@true"):
        key, true_key = attribution_key(image_id), attribution_key(image_id, true_class=True)
        assert re.fullmatch(r"[A-Za-z0-9_.~%-]+", key) and key != true_key
        assert image_id_of(key) == image_id_of(true_key) == image_id
    assert attribution_key("a.png@true") != attribution_key("a.png", true_class=True)


def test_sample_is_stratified_seeded_and_gives_small_classes_what_they_have():
    labels = np.array([0] * 50 + [1] * 50 + [2] * 3)
    chosen = sample_indices(labels, 21, seed=1)
    assert np.bincount(labels[chosen]).tolist() == [9, 9, 3]
    assert np.array_equal(chosen, sample_indices(labels, 21, seed=1))
    assert not np.array_equal(chosen, sample_indices(labels, 21, seed=2))
    assert np.array_equal(sample_indices(labels, None, seed=0), np.arange(103))
    assert len(sample_indices(np.full(10, -1), 4, seed=0)) == 4
    assert equal_quotas([1, 5, 5], 10, np.random.default_rng(0)) == [1, 5, 4] or \
        equal_quotas([1, 5, 5], 10, np.random.default_rng(0)) == [1, 4, 5]


def test_auto_internal_batch_size_is_at_least_one_and_capped():
    config = ModelConfig("patch", ["a", "b"], 8, [0.5] * 3, [0.25] * 3)
    forward = explained_function(ImageClassifier(nn.Sequential(nn.Flatten(), nn.Linear(192, 2)),
                                                 config))
    batch = auto_internal_batch_size(forward, (3, 8, 8), torch.device("cpu"))
    assert 1 <= batch <= 512


def test_settings_refuse_unknown_methods_baselines_and_steps():
    for bad in ({"method": "simpson"}, {"baseline": "white"}, {"n_steps": 0},
                {"internal_batch_size": 0}):
        with pytest.raises(ValueError):
            IGSettings(**bad)
