"""Online drift per request: the detector packaged with a model watches what the server is sent.

`shared.drift.online` on synthetic features (false alarms over 10x the expected run time, time to
detect a shift), then the real server with a digits model and a monitoring detector in its
`drift/` folder: a clean stream, then one that switches to corrupted digits.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from shared.drift import DriftDetector, alibi, untrained_encoder
from shared.drift.online import OnlineMMD
from tests.reliability import digits_arrays, write_tiny_model
from tests.serving import request, running_server

WINDOW, ERT = 20, 50  # the server tests' settings: a false alarm per 50 requests on clean data


def alarms(detector: OnlineMMD, stream: np.ndarray) -> list[bool]:
    return [detector.update(stream[i:i + 1]).drift for i in range(len(stream))]


def test_false_alarms_over_ten_expected_run_times_match_the_configuration():
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(1000, 16)).astype(np.float32)
    detector = OnlineMMD.calibrate(reference, alibi.infer_sigma(reference), WINDOW, ERT)
    clean = alarms(detector, rng.normal(size=(10 * ERT * 10, 16)).astype(np.float32))
    tested = len(clean) - (WINDOW - 1)
    rate = sum(clean) / tested
    print(f"clean: {sum(clean)} alarmed updates of {tested} ({rate:.4f}; configured {1 / ERT})")
    assert not any(clean[:WINDOW - 1])  # no test until the window is full
    assert rate <= 2 / ERT  # ~1/ERT, with room for the calibration's sampling error
    shifted = alarms(detector, rng.normal(loc=0.5, size=(WINDOW, 16)).astype(np.float32))
    assert any(shifted), "a shift of half a standard deviation went unseen for a whole window"


def test_calibration_needs_a_reference_larger_than_the_window():
    with pytest.raises(ValueError, match="at least 22 samples"):
        OnlineMMD.calibrate(np.zeros((21, 4), np.float32), [1.0], 20, ERT)
    with pytest.raises(ValueError, match="above 1"):
        OnlineMMD.calibrate(np.zeros((100, 4), np.float32), [1.0], 20, 1)


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


def corrupt(images: np.ndarray, rng) -> np.ndarray:
    """Heavy Gaussian noise (sigma 120 of 255). The untrained encoder is weak: at sigma 60 the
    window of 20 needed 39 images (README), the point of a detector on the model's features."""
    noisy = images.astype(np.float32) + rng.normal(0, 120, images.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def drift_model(tmp_path_factory):
    images, _ = digits_arrays(32)
    images = images[np.random.default_rng(0).permutation(len(images))]  # the file is by writer
    base = tmp_path_factory.mktemp("drift") / "opt_ml"
    write_tiny_model(base / "model", size=32)
    DriftDetector.fit(untrained_encoder(32), images[:1000]).save(base / "model" / "drift")
    return base, images[1000:]


def attributes(headers: dict) -> dict[str, str]:
    text = headers.get("X-Amzn-SageMaker-Custom-Attributes", "")
    return dict(part.split("=", 1) for part in text.split(",") if part)


def test_a_stream_switching_to_corrupted_digits_is_flagged_within_a_window(drift_model, tmp_path):
    base, held_out = drift_model
    rng = np.random.default_rng(1)
    clean = held_out[rng.choice(len(held_out), 10 * ERT, replace=False)]
    env = {"SAGEMAKER_DRIFT_WINDOW": str(WINDOW), "SAGEMAKER_DRIFT_EXPECTED_RUN_TIME": str(ERT)}
    access = tmp_path / "access.log"
    with access.open("w") as stdout, running_server(base, env=env, stdout=stdout) as (proc, port):
        states = []
        for image in clean:  # 10 x the expected run time, one image per request
            status, body, headers = request(port, "POST", "/invocations", png(image),
                                            {"Content-Type": "image/png"})
            assert status == 200 and "label" in body  # the body is unchanged
            states.append(attributes(headers))
        detected_after = None
        for n, image in enumerate(corrupt(held_out[:WINDOW], rng), start=1):
            _, _, headers = request(port, "POST", "/invocations", png(image),
                                    {"Content-Type": "image/png"})
            if attributes(headers)["drift"] == "true":
                detected_after = n
                break
        for image in corrupt(held_out[WINDOW:2 * WINDOW], rng):  # the episode goes on
            request(port, "POST", "/invocations", png(image), {"Content-Type": "image/png"})
    log = proc.stderr.read()
    assert states[0] == {"drift": "false", "drift_window": f"1/{WINDOW}"}
    tested = [s for s in states if "drift_statistic" in s]
    false_alarms = sum(s["drift"] == "true" for s in tested)
    print(f"clean: {false_alarms} alarms in {len(tested)} tested requests (configured 1/{ERT});"
          f" corrupted: flagged after {detected_after} requests")
    assert len(tested) == len(clean) - (WINDOW - 1)
    assert false_alarms <= 2 * len(tested) / ERT
    assert detected_after is not None and detected_after <= WINDOW
    assert "online drift: detector" in log
    records = [json.loads(line) for line in access.read_text().splitlines()]
    served = [r for r in records if r["path"] == "/invocations"]
    assert all("drift_threshold" in r for r in served)
    assert any("DriftStatistic" in [m["Name"] for m in r["_aws"]["CloudWatchMetrics"][0]["Metrics"]]
               for r in served)
    episodes = log.count("drift detected")
    assert episodes >= 1 and episodes <= false_alarms + 1  # once per episode, not per request


def test_a_model_without_drift_folder_answers_without_drift_attributes(tmp_path):
    write_tiny_model(tmp_path / "opt_ml" / "model", size=32)
    with running_server(tmp_path / "opt_ml") as (_, port):
        status, _, headers = request(port, "POST", "/invocations", png(digits_arrays(32)[0][0]),
                                     {"Content-Type": "image/png"})
    assert status == 200 and "X-Amzn-SageMaker-Custom-Attributes" not in headers


def test_a_broken_drift_folder_fails_the_model_with_the_reason(drift_model, tmp_path):
    import shutil

    base = tmp_path / "opt_ml"
    shutil.copytree(drift_model[0], base)
    (base / "model" / "drift" / "detector.json").write_text("{}")
    with running_server(base, wait_ready=False) as (proc, port):
        while (body := request(port, "GET", "/ping")[1])["status"] == "loading":
            pass
    assert body["status"] == "failed"
    assert "drift detector packaged with the model could not be loaded" in proc.stderr.read()


def test_one_forward_pass_gives_the_models_probabilities_and_its_encoders_features(tmp_path):
    from shared.drift import classifier_encoder
    from shared.models import load_artifact

    model = load_artifact(write_tiny_model(tmp_path / "model", size=32)).eval()
    images = digits_arrays(32)[0][:10]
    probabilities, features = model.probabilities_and_features(images)
    assert model.head_is_classifier()
    np.testing.assert_allclose(probabilities, model.probabilities(images), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(features, classifier_encoder(tmp_path / "model").encode(images),
                               rtol=1e-5, atol=1e-5)


def test_a_detector_on_the_models_own_features_shares_its_forward_pass(tmp_path):
    from shared.drift import classifier_encoder

    images, _ = digits_arrays(32)
    base = tmp_path / "opt_ml"
    write_tiny_model(base / "model", size=32)
    DriftDetector.fit(classifier_encoder(base / "model"), images[:300]).save(
        base / "model" / "drift")
    env = {"SAGEMAKER_DRIFT_WINDOW": "5", "SAGEMAKER_DRIFT_EXPECTED_RUN_TIME": str(ERT)}
    with running_server(base, env=env) as (proc, port):
        for image in images[300:306]:
            status, _, headers = request(port, "POST", "/invocations", png(image),
                                         {"Content-Type": "image/png"})
            assert status == 200
    assert "drift_statistic" in attributes(headers)
    assert "the model's own features, one forward pass" in proc.stderr.read()
