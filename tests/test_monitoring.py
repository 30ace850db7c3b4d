"""The monitoring component and shared.drift: MMD drift on the digits, clean and visibly corrupted.

The reference is a seeded half of the digits; held-out digits are the "production" images. Train
and serve run through the real entrypoints; the many repeated draws call shared.drift directly.
"""

import hashlib
import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter
from safetensors.torch import load_file, save_file

from algorithm.robustness import jpeg
from monitoring.__main__ import MODES
from shared.data import decode_images
from shared.drift import (
    STAGES,
    DetectorFormatError,
    DriftDetector,
    alibi,
    classifier_encoder,
    reference_sample,
    untrained_encoder,
    windows,
)
from shared.drift.encoders import image_statistics
from shared.drift.mmd import (
    gaussian_kernel,
    median_bandwidth,
    mmd2_statistics,
    permutation_test,
    split_matrix,
    splits_from_orders,
)
from shared.models import ImageClassifier, save_artifact, write_tarball
from shared.sagemaker.entrypoint import main as entrypoint
from shared.sample_data import digits_images
from tests.conftest import run_entrypoint

REFERENCE_IMAGES, REFERENCE_SIZE, DRAW = 1000, 800, 200


def main(argv: list[str]) -> int:
    """`python -m monitoring ARGV`, in this process."""
    return entrypoint("monitoring", MODES, "", argv)


def noise(images, rng):
    return np.clip(images + rng.normal(0, 60, images.shape), 0, 255).astype(np.uint8)


def blur(images, rng):
    return np.stack([np.asarray(Image.fromarray(i).filter(ImageFilter.GaussianBlur(1.5)))
                     for i in images])


def darker(images, rng, shift=40):
    return np.clip(images.astype(np.int16) - shift, 0, 255).astype(np.uint8)


def rotate(images, rng, degrees=30):
    return np.stack([np.asarray(Image.fromarray(i).rotate(degrees, Image.Resampling.BILINEAR,
                                                          fillcolor=(255, 255, 255)))
                     for i in images])


CORRUPTIONS = {"gaussian_noise": noise, "blur": blur, "brightness": darker, "rotation": rotate}


def write_images(folder, images, prefix="img"):
    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{prefix}-{i:04d}.png")
    return folder


def read_images(folder):
    paths = sorted(folder.rglob("*.png"))
    return np.stack([d.image for d in decode_images(paths, 32, "crop", workers=1)])


def drift_report(base):
    return json.loads((base / "processing" / "output" / "report" / "drift.json").read_text())


def message(base):
    return (base / "output" / "message").read_text()


@pytest.fixture(scope="module")
def digits():
    """All digits as one uint8 array, split by a seeded shuffle into reference and held-out."""
    images, _ = digits_images(32)
    order = np.random.default_rng(7).permutation(len(images))
    images = np.stack(images)
    return images[order[:REFERENCE_IMAGES]], images[order[REFERENCE_IMAGES:]]


@pytest.fixture(scope="module")
def trained(digits, tmp_path_factory):
    """monitoring train through the entrypoint on 1,000 reference digits (subsampled to 800)."""
    base = tmp_path_factory.mktemp("monitoring_train")
    write_images(base / "processing" / "input" / "data" / "digits", digits[0])
    result = run_entrypoint("monitoring", "train", "--reference-size", str(REFERENCE_SIZE),
                            base=base)
    assert result.returncode == 0, result.stderr[-3000:]
    return base / "processing" / "output" / "detector"


@pytest.fixture(scope="module")
def detector(trained):
    return DriftDetector.load(trained)


def serve_base(tmp_path, detector_dir, images=None):
    base = tmp_path / "opt_ml"
    data = base / "processing" / "input" / "data"
    data.mkdir(parents=True)
    if images is not None:
        write_images(data, images)
    shutil.copytree(detector_dir, base / "processing" / "input" / "detector")
    return base


# --- train mode and the detector folder -------------------------------------------------------


def test_train_writes_a_detector_folder_without_pickles_that_describes_itself(trained):
    assert sorted(p.name for p in trained.iterdir()) == [
        "detector.json", "encoder.safetensors", "reference.npy"]
    assert not [p for p in trained.parent.iterdir() if p.name.startswith(".")]  # no staging left
    config = json.loads((trained / "detector.json").read_text())
    assert config["format_version"] == 1
    assert config["encoder"]["kind"] == "untrained"
    assert config["encoder"]["image_size"] == 32
    assert config["encoder"]["feature_dim"] == 32
    assert config["encoder"]["mean"] == [0.0, 0.0, 0.0] and config["encoder"]["std"] == [1.0] * 3
    assert config["p_value"] == 0.05 and config["permutations"] == 100 and config["seed"] == 0
    assert config["n_reference"] == REFERENCE_SIZE  # 1,000 found, a seeded 800 kept
    assert config["reference"]["images_found"] == REFERENCE_IMAGES
    assert len(config["sigma"]) == 1 and config["sigma"][0] > 0
    assert set(config["library_versions"]) >= {"alibi-detect", "torch", "numpy"}
    reference = np.load(trained / "reference.npy", allow_pickle=False)
    assert reference.shape == (REFERENCE_SIZE, 32) and reference.dtype == np.float32


def test_bandwidth_is_the_one_alibi_detect_infers_from_the_reference(detector):
    assert detector.config.sigma == pytest.approx(alibi.infer_sigma(detector.reference))


def test_reference_subsample_is_reproducible_and_seeded():
    first = reference_sample(5000, 2000, seed=3)
    assert np.array_equal(first, reference_sample(5000, 2000, seed=3))
    assert len(np.unique(first)) == 2000 and np.all(np.diff(first) > 0)
    assert not np.array_equal(first, reference_sample(5000, 2000, seed=4))
    assert np.array_equal(reference_sample(10, 2000, seed=3), np.arange(10))


# --- serve mode ---------------------------------------------------------------------------------


def test_clean_held_out_images_give_no_drift_and_a_full_report(digits, trained, tmp_path):
    base = serve_base(tmp_path, trained, digits[1][:DRAW])
    result = run_entrypoint("monitoring", "serve", base=base)
    assert result.returncode == 0, result.stderr[-3000:]
    report = drift_report(base)
    assert report["drift"] is False and report["p_value"] >= 0.05
    for key in ("p_value", "distance", "threshold", "n_reference", "n_test", "windows", "detector"):
        assert key in report
    assert report["n_reference"] == REFERENCE_SIZE and report["n_test"] == DRAW
    assert report["windows"] == []
    assert report["detector"]["detector_id"] == json.loads(
        (trained / "detector.json").read_text())["detector_id"]
    with Image.open(base / "processing" / "output" / "report" / report["plot"]) as png:
        assert png.format == "PNG" and png.width >= 400


def test_serve_in_a_fresh_process_gives_the_same_p_value_as_the_detector_in_memory(
        digits, trained, detector, tmp_path):
    base = serve_base(tmp_path, trained, digits[1][DRAW:2 * DRAW])
    result = run_entrypoint("monitoring", "serve", base=base)
    assert result.returncode == 0, result.stderr[-3000:]
    report = drift_report(base)
    features = detector.features(read_images(base / "processing" / "input" / "data"))
    here = detector.test_features(features)
    assert report["p_value"] == here.p_value
    # the features it kept (computed into a memory map) are the detector's own
    with np.load(base / "processing" / "output" / "report" / report["features"]) as saved:
        assert saved["features"].shape == (DRAW, detector.feature_dim)
        assert np.allclose(saved["features"], features, atol=1e-5)
    assert report["distance"] == pytest.approx(here.distance, rel=1e-6, abs=1e-12)
    assert report["threshold"] == pytest.approx(here.threshold, rel=1e-6, abs=1e-12)


def test_save_and_load_round_trip_the_encoder_reference_and_verdict(digits, tmp_path):
    encoder = untrained_encoder(32, seed=5)
    fitted = DriftDetector.fit(encoder, digits[0][:300], permutations=50, seed=5)
    batch = rotate(digits[1][:100], None, degrees=10)
    before = fitted.test(batch)
    fitted.save(tmp_path / "detector")
    loaded = DriftDetector.load(tmp_path / "detector")
    after = loaded.test(batch)
    assert (after.p_value, after.drift) == (before.p_value, before.drift)
    assert after.distance == pytest.approx(before.distance, rel=1e-9)
    assert np.array_equal(loaded.reference, fitted.reference)
    assert np.array_equal(loaded.features(batch), fitted.features(batch))
    assert loaded.config.sigma == fitted.config.sigma


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_a_visible_corruption_of_held_out_images_gives_drift(digits, detector, corruption):
    clean = digits[1][:DRAW]
    corrupted = CORRUPTIONS[corruption](clean, np.random.default_rng(1))
    assert not detector.test(clean).drift
    result = detector.test(corrupted)
    assert result.drift and result.p_value < 0.05
    assert result.distance > result.threshold


def test_windows_locate_a_gradual_shift_in_file_order(digits, trained, tmp_path):
    held_out = digits[1]
    rng = np.random.default_rng(2)
    stages = [held_out[:100], held_out[100:200], darker(held_out[200:300], rng, shift=25),
              noise(held_out[300:400], rng)]
    base = serve_base(tmp_path, trained, np.concatenate(stages))
    result = run_entrypoint("monitoring", "serve", "--window", "100", "--max-test-size", "300",
                            base=base)
    assert result.returncode == 0, result.stderr[-3000:]  # drift is a result, not a failure
    report = drift_report(base)
    # the whole-batch test takes a sample of 300; the windows still cover all 400 images
    assert report["drift"] is True and report["n_test"] == 300 and report["window_size"] == 100
    assert report["max_test_size"] == 300
    assert [w["drift"] for w in report["windows"]] == [False, False, True, True]
    assert report["windows_with_drift"] == [2, 3]
    third = report["windows"][2]
    assert (third["start"], third["end"], third["n_test"]) == (200, 300, 100)
    assert (third["first_file"], third["last_file"]) == ("img-0200.png", "img-0299.png")


def test_beyond_max_samples_the_batch_test_takes_a_seeded_sample(digits, detector):
    features = detector.features(digits[1][:DRAW])
    capped = detector.test_features(features, max_samples=120)
    assert capped.n_test == 120
    assert detector.test_features(features, max_samples=120).to_json() == capped.to_json()  # same sample
    sample = features[reference_sample(DRAW, 120, detector.config.seed)]
    assert detector.test_features(sample).distance == capped.distance
    assert detector.test_features(features, max_samples=DRAW).n_test == DRAW  # at the cap: all


def test_windows_cover_every_sample_and_keep_a_testable_tail():
    assert windows(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert windows(9, 4) == [(0, 4), (4, 8)]  # a single leftover image cannot be tested alone
    assert windows(3, 10) == [(0, 3)]


# --- statistics: false alarms and agreement with alibi-detect ------------------------------------


@pytest.fixture(scope="module")
def digit_features(digits):
    encoder = untrained_encoder(32, seed=0)
    return encoder, encoder.encode(np.concatenate(digits))


def test_false_alarm_rate_over_repeated_clean_draws_stays_near_the_p_value(digit_features):
    encoder, features = digit_features
    rng = np.random.default_rng(11)
    draws, alarms, p_values = 40, 0, []
    for draw in range(draws):  # a fresh reference and a disjoint clean batch each time
        order = rng.permutation(len(features))
        fitted = DriftDetector.from_features(encoder, features[order[:600]],
                                             p_value=0.05, permutations=100, seed=draw)
        result = fitted.test_features(features[order[600:750]])
        alarms += result.drift
        p_values.append(result.p_value)
    # Binomial(40, 0.05): mean 2 alarms; 5 or fewer holds with probability 0.99
    assert alarms <= 5, f"{alarms} false alarms in {draws} clean draws"
    assert 0.35 <= np.mean(p_values) <= 0.65  # p-values under no drift are roughly uniform


def test_gaussian_kernel_equals_alibi_detects_gaussian_rbf():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(50, 8)), rng.normal(size=(40, 8))
    for sigma in ([1.5], [0.5, 2.0]):
        ours = gaussian_kernel(torch.from_numpy(x), torch.from_numpy(y), torch.tensor(sigma))
        assert np.allclose(ours.numpy(), alibi.kernel_matrix(x, y, sigma), rtol=1e-12, atol=1e-15)


def test_median_bandwidth_equals_alibi_detects_inferred_sigma(digit_features):
    """Fitting a detector no longer imports alibi-detect; the bandwidth must stay its own."""
    _, features = digit_features
    repeated = np.concatenate([features[:300], features[:40]])  # duplicates: zero distances
    for reference in (features[:300], repeated, features[:7]):
        assert median_bandwidth(reference) == pytest.approx(alibi.infer_sigma(reference), rel=1e-6)


def test_every_permuted_statistic_equals_alibi_detects_computation(digit_features):
    _, features = digit_features
    reference, test = features[:300], features[300:400]
    sigma = alibi.infer_sigma(reference)
    splits = split_matrix(300, 100, 20, torch.Generator().manual_seed(0))
    pool = torch.from_numpy(np.concatenate([reference, test]))
    ours = mmd2_statistics(pool, 100, torch.tensor(sigma, dtype=torch.float64), splits).numpy()
    # the same splits as permutations: reference rows first, "test" rows last
    orders = [np.concatenate([np.flatnonzero(col == 0), np.flatnonzero(col == 1)])
              for col in splits.T.numpy()]
    theirs = alibi.permuted_mmd2(reference, test, sigma, orders)
    assert np.allclose(ours, theirs, rtol=1e-5, atol=1e-7)  # float32 kernel, as alibi-detect's
    assert np.abs(ours).max() > 1e-5


def test_statistics_do_not_depend_on_how_the_kernel_is_cut_into_blocks(digit_features):
    """One block, ragged last blocks and blocks narrower than the test share must all sum to the
    same quadratic forms (each block counts its mirror below the diagonal)."""
    _, features = digit_features
    pool = torch.from_numpy(np.concatenate([features[:150], features[300:340]]))
    sigma = torch.tensor(alibi.infer_sigma(features[:150]), dtype=torch.float64)
    splits = split_matrix(150, 40, 30, torch.Generator().manual_seed(1))
    whole = mmd2_statistics(pool, 40, sigma, splits, block_rows=len(pool)).numpy()
    for block_rows in (1, 7, 64, 189):
        cut = mmd2_statistics(pool, 40, sigma, splits, block_rows=block_rows).numpy()
        # float32 sums in another order: ~1e-5 of the statistics' scale apart, not more
        assert np.allclose(cut, whole, rtol=0, atol=1e-4 * np.abs(whole).max()), block_rows


@pytest.mark.parametrize("shift", [0, 4, 30])
def test_p_value_threshold_and_distance_equal_alibi_detects_mmd_drift_on_its_permutations(
        digits, digit_features, shift):
    """alibi-detect draws `randperm(N)` once per permutation after seeding: replayed, the fast test
    must reach its very p-value; with its own permutations, a p-value within permutation noise."""
    encoder, features = digit_features
    reference = features[:600]
    test = encoder.encode(darker(digits[1][:150], None, shift=shift))
    sigma = alibi.infer_sigma(reference)
    theirs = alibi.mmd_drift_predict(reference, test, p_value=0.05, permutations=100, seed=0)
    torch.manual_seed(0)
    replayed = splits_from_orders([torch.randperm(750) for _ in range(100)], 600, 150)
    same = permutation_test(reference, test, sigma, p_value=0.05, splits=replayed)
    assert same.p_value == pytest.approx(theirs["p_value"], abs=1e-6)
    assert same.threshold == pytest.approx(theirs["threshold"], rel=1e-4)
    # alibi-detect sums the 750 x 750 kernel matrix in float32, in an order that depends on the
    # thread count (one core: 3.7e-7 off, two: within 1e-7); its MMD² is a difference of such sums
    assert same.distance == pytest.approx(theirs["distance"], rel=1e-4, abs=2e-6)
    assert (same.p_value < 0.05) == theirs["drift"]
    own = permutation_test(reference, test, sigma, p_value=0.05, seed=1)
    noise_sd = np.sqrt(2 * 0.25 / 100)  # difference of two p-values from 100 permutations each
    assert abs(own.p_value - theirs["p_value"]) <= 4 * noise_sd


# --- the classifier encoder ----------------------------------------------------------------------


def train_on_a_model(reference, encoder, tmp_path):
    """monitoring train --encoder ENCODER through the entrypoint, on a seeded resnet10t given as a
    model.tar.gz: (the classifier, the detector folder, its detector.json)."""
    torch.manual_seed(0)
    classifier = ImageClassifier.create("resnet10t", [str(d) for d in range(10)], 32).eval()
    folder = save_artifact(classifier, tmp_path / "model")
    base = tmp_path / "opt_ml"
    write_images(base / "processing" / "input" / "data", reference)
    write_tarball(folder, base / "processing" / "input" / "model" / "model.tar.gz")
    result = run_entrypoint("monitoring", "train", "--encoder", encoder, base=base)
    assert result.returncode == 0, result.stderr[-3000:]
    detector_dir = base / "processing" / "output" / "detector"
    return classifier, detector_dir, json.loads((detector_dir / "detector.json").read_text())


def test_model_encoder_uses_a_trained_model_tarball_and_round_trips(digits, tmp_path):
    classifier, detector_dir, config = train_on_a_model(digits[0][:300], "model", tmp_path)
    model, mean, std = classifier.network, classifier.config.mean, classifier.config.std
    assert config["encoder"]["kind"] == "model"
    assert config["encoder"]["architecture"] == "resnet10t"
    assert config["encoder"]["image_size"] == 32
    assert config["encoder"]["feature_dim"] == 512  # resnet10t's pre-logits width
    assert config["encoder"]["mean"] == pytest.approx(mean)
    loaded = DriftDetector.load(detector_dir)
    images = digits[1][:100]
    with torch.inference_mode():
        expected = model.forward_head(model.forward_features(
            (torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
             - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)),
            pre_logits=True).numpy()
    assert np.allclose(loaded.features(images), expected, atol=1e-4)
    corrupted = loaded.test(darker(images, None, shift=60))
    assert corrupted.drift and corrupted.p_value < loaded.test(images).p_value


def test_softmax_encoder_measures_the_class_probabilities_and_sees_a_class_proportion_shift(
        digits, tmp_path):
    classifier, detector_dir, config = train_on_a_model(digits[0][:300], "softmax", tmp_path)
    assert config["encoder"]["kind"] == "softmax" and config["encoder"]["feature_dim"] == 10
    loaded = DriftDetector.load(detector_dir)
    images = digits[1][:200]
    assert np.allclose(loaded.features(images), classifier.probabilities(images), atol=1e-5)
    assert np.allclose(loaded.features(images).sum(1), 1, atol=1e-5)
    # A batch of one class only, against the reference's mix of all ten.
    images, labels = digits_images(32)
    held_out = np.random.default_rng(7).permutation(len(images))[REFERENCE_IMAGES:]
    zeros = np.stack([images[i] for i in held_out if labels[i] == "0"])
    assert loaded.test(zeros).drift


def test_stages_encoder_is_standardised_on_the_reference_and_round_trips(digits, tmp_path):
    reference = digits[0][:300]
    _, detector_dir, config = train_on_a_model(reference, "stages", tmp_path)
    # resnet10t at 32 px: five feature maps (the stem's and four stages') by mean, 1,024 numbers;
    # the four larger than 1 x 1 by max, 512; then the three image statistics
    assert config["encoder"]["kind"] == "stages" and config["encoder"]["feature_dim"] == 1539
    assert config["encoder"]["options"]["image_statistics"] is True
    loaded = DriftDetector.load(detector_dir)
    features = loaded.features(reference)
    assert np.allclose(features.mean(0), 0, atol=1e-3)
    mapped = np.lib.format.open_memmap(tmp_path / "f.npy", "w+", np.float32, features.shape)
    assert loaded.features(reference, out=mapped) is mapped  # batch by batch, same numbers
    assert np.array_equal(mapped, features)
    # Each block weighs alike: a feature's spread times the square root of its block's width is
    # 1, but for features nearly constant on the reference
    widths = [64, 64, 128, 256, 512, 64, 64, 128, 256, 3]
    spread = features.std(0) * np.sqrt(np.repeat(widths, widths))
    assert np.median(spread) == pytest.approx(1, abs=1e-3) and spread.max() <= 1.001
    images = digits[1][:100]
    noisy = np.clip(images + np.random.default_rng(0).normal(0, 20, images.shape), 0, 255)
    corrupted = loaded.test(noisy.astype(np.uint8))
    assert corrupted.drift and corrupted.p_value < loaded.test(images).p_value


def test_image_statistics_see_jpeg_blocking_noise_and_blur(digits):
    images = digits[1][:50]
    clean = image_statistics(torch.from_numpy(images).permute(0, 3, 1, 2))
    blocked = image_statistics(torch.from_numpy(jpeg(images, quality=10)).permute(0, 3, 1, 2))
    gradient, laplacian, blockiness = clean.mean(0)
    assert blocked[:, 2].mean() > 1.5 * blockiness  # JPEG's 8 x 8 block edges stand out
    noisy = np.clip(images + np.random.default_rng(0).normal(0, 20, images.shape), 0, 255)
    noisy_stats = image_statistics(torch.from_numpy(noisy.astype(np.uint8)).permute(0, 3, 1, 2))
    assert noisy_stats[:, 1].mean() > 2 * laplacian
    blurred = np.stack([np.asarray(Image.fromarray(im).filter(ImageFilter.GaussianBlur(1)))
                        for im in images])
    blurred_stats = image_statistics(torch.from_numpy(blurred).permute(0, 3, 1, 2))
    assert blurred_stats[:, 0].mean() < gradient
    small = image_statistics(torch.zeros(2, 3, 8, 8))  # no block edge inside an 8 px image
    assert small.shape == (2, 3) and torch.all(small == 0)


def test_a_stages_detector_flags_jpeg_and_loads_one_saved_without_the_statistics(digits, tmp_path):
    torch.manual_seed(0)
    classifier = ImageClassifier.create("resnet10t", [str(d) for d in range(10)], 32).eval()
    model = save_artifact(classifier, tmp_path / "model")
    reference, held_out = digits[0][:300], digits[1][:100]
    with_statistics = DriftDetector.fit(classifier_encoder(model, kind=STAGES), reference, seed=0)
    blocked = with_statistics.test(jpeg(held_out, quality=10))
    assert blocked.drift and blocked.p_value < with_statistics.test(held_out).p_value
    # A detector saved before the image statistics (no option, 1,536 features) loads and encodes
    # the pooled stages alone, as it did
    encoder = classifier_encoder(model, kind=STAGES)
    options = {k: v for k, v in encoder.spec.options.items() if k != "image_statistics"}
    encoder.spec = replace(encoder.spec, options=options, feature_dim=1536)
    old = DriftDetector.load(DriftDetector.fit(encoder, reference, seed=0).save(tmp_path / "old"))
    assert old.encoder.spec.feature_dim == 1536 and old.features(held_out).shape == (100, 1536)


def test_a_stages_detector_without_its_standardisation_is_refused(digits, tmp_path):
    torch.manual_seed(0)
    classifier = ImageClassifier.create("resnet10t", [str(d) for d in range(10)], 32).eval()
    encoder = classifier_encoder(save_artifact(classifier, tmp_path / "model"), kind=STAGES)
    folder = DriftDetector.fit(encoder, digits[0][:100], permutations=10).save(tmp_path / "d")
    weights = load_file(folder / "encoder.safetensors")
    del weights["standardise.scale"]
    save_file(weights, folder / "encoder.safetensors")
    config = json.loads((folder / "detector.json").read_text())
    config["files"]["encoder.safetensors"] = hashlib.sha256(
        (folder / "encoder.safetensors").read_bytes()).hexdigest()
    (folder / "detector.json").write_text(json.dumps(with_detector_id(config)))
    with pytest.raises(DetectorFormatError, match="needs its standardise.shift and standardise.scale"):
        DriftDetector.load(folder)


def test_a_model_encoder_without_a_model_names_what_it_needs(digits, tmp_path, sm_base):
    write_images(sm_base / "processing" / "input" / "data", digits[0][:50])
    assert main(["train", "--encoder", "softmax"]) != 0
    assert "--encoder softmax needs a trained model" in message(sm_base)


# --- failures: a clear reason in output/message and a non-zero exit -------------------------------


def test_serve_without_images_fails_with_a_clear_message(trained, tmp_path, sm_base):
    base = serve_base(tmp_path, trained)
    assert base == sm_base
    assert main(["serve"]) != 0
    assert "no images to test" in message(base)


def test_serve_without_a_detector_fails_with_a_clear_message(digits, sm_base):
    write_images(sm_base / "processing" / "input" / "data", digits[1][:5])
    assert main(["serve"]) != 0
    assert "detector folder" in message(sm_base) and "does not exist" in message(sm_base)


def test_a_detector_from_an_incompatible_version_is_refused(digits, trained, tmp_path, sm_base):
    base = serve_base(tmp_path, trained, digits[1][:5])
    config_file = base / "processing" / "input" / "detector" / "detector.json"
    config = json.loads(config_file.read_text())
    config["format_version"] = 99
    config_file.write_text(json.dumps(config))
    assert main(["serve"]) != 0
    assert "format_version 99" in message(base) and "incompatible" in message(base)


def test_an_altered_detector_folder_is_refused(digits, trained, tmp_path, sm_base):
    base = serve_base(tmp_path, trained, digits[1][:5])
    reference = base / "processing" / "input" / "detector" / "reference.npy"
    np.save(reference, np.zeros((REFERENCE_SIZE, 32), np.float32))
    assert main(["serve"]) != 0
    assert "reference.npy does not match" in message(base)
    with pytest.raises(DetectorFormatError):
        DriftDetector.load(reference.parent)


def with_detector_id(config: dict) -> dict:
    """detector.json with its content hash recomputed, as a forger would (see DetectorConfig)."""
    data = {k: v for k, v in config.items() if k not in ("detector_id", "created",
                                                          "library_versions")}
    digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
    return {**config, "detector_id": digest}


@pytest.mark.parametrize("field,value", [("std", [float("nan"), 1.0, 1.0]),
                                         ("mean", [0.0, float("inf"), 0.0]),
                                         ("image_size", True)])
def test_a_forged_encoder_spec_is_refused_by_name(trained, tmp_path, field, value):
    folder = tmp_path / "detector"
    shutil.copytree(trained, folder)
    config = json.loads((folder / "detector.json").read_text())
    config["encoder"][field] = value
    (folder / "detector.json").write_text(json.dumps(with_detector_id(config)))
    with pytest.raises(DetectorFormatError, match=f"encoder: {field} must be"):
        DriftDetector.load(folder)


def test_an_oversized_detector_json_is_refused_before_it_is_read(trained, tmp_path):
    folder = tmp_path / "detector"
    shutil.copytree(trained, folder)
    config = json.loads((folder / "detector.json").read_text())
    config["reference"]["padding"] = "x" * (11 * 1024 * 1024)
    (folder / "detector.json").write_text(json.dumps(config))
    with pytest.raises(DetectorFormatError, match="larger than"):
        DriftDetector.load(folder)


def test_images_that_all_fail_to_decode_fail_with_the_first_reason(trained, tmp_path, sm_base):
    base = serve_base(tmp_path, trained)
    for name in ("a.png", "b.jpg", "c.png"):
        (base / "processing" / "input" / "data" / name).write_bytes(b"not an image")
    assert main(["serve"]) != 0
    assert "none of the 3 production images could be decoded" in message(base)


def test_train_without_images_or_model_fails_with_a_clear_message(digits, sm_base):
    (sm_base / "processing" / "input" / "data").mkdir(parents=True)
    assert main(["train"]) != 0
    assert "no reference images" in message(sm_base)
    write_images(sm_base / "processing" / "input" / "data", digits[0][:5])
    assert main(["train", "--encoder", "model"]) != 0
    assert "needs a trained model" in message(sm_base)


def test_bad_flags_are_reported_in_the_message_file(sm_base):
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--window", "1"])
    assert exit_info.value.code != 0
    assert "--window" in message(sm_base)
    with pytest.raises(SystemExit):
        main(["train", "--p-value", "1.5"])
    assert "--p-value" in message(sm_base)


# --- several hosts --------------------------------------------------------------------------------


def test_on_several_hosts_each_tests_its_share_and_only_the_first_trains(
        digits, trained, tmp_path, sm_base):
    base = serve_base(tmp_path, trained, digits[1][:40])
    config = base / "config" / "resourceconfig.json"
    config.parent.mkdir(parents=True)
    config.write_text(json.dumps({"hosts": ["algo-1", "algo-2"], "current_host": "algo-2"}))
    assert main(["serve", "--workers", "1"]) == 0
    report = json.loads((base / "processing/output/report/drift-algo-2.json").read_text())
    assert report["n_test"] == 20 and report["host"] == "algo-2"
    assert report["detector"]["detector_id"]
    assert (base / "processing/output/report/drift-algo-2.png").is_file()
    assert main(["train", "--workers", "1"]) == 0  # nothing to do on the second host
    assert not (base / "processing" / "output" / "detector").exists()
