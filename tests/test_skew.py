"""No train/serve skew: every path a trained model takes gives the same numbers for the same images.

The same test images go through the Lightning module as training feeds it (the DataModule's
batches), the evaluation the training job writes, the HTTP model server, the explainer, and the
model-feature drift encoder, and through an independent hand-written preprocessing of the artifact's
own normalisation. Logits, probabilities and features must agree to float tolerance: a
preprocessing change in any one path would break this.
"""

import io
import json

import numpy as np
import pytest
import torch

from algorithm.data import ProcessedDataModule
from algorithm.evaluation import predict
from algorithm.hyperparameters import Hyperparameters
from algorithm.module import Classifier
from shared.attribution import Explainer, IGSettings
from shared.data import ProcessedDataset
from shared.drift import classifier_encoder
from shared.models import load_artifact
from tests.serving import request, running_server

COUNT = 48


@pytest.fixture(scope="module")
def inputs(trained_job):
    base, _ = trained_job
    data = ProcessedDataset(base / "input" / "data" / "test")
    return base / "model", data, data.images(range(COUNT))


def by_hand(model_dir, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Logits and penultimate features computed without the suite's model code: model.json's
    mean and std applied by hand, then the bare timm network from the weights file."""
    import timm
    from safetensors.torch import load_file

    config = json.loads((model_dir / "model.json").read_text())
    network = timm.create_model(config["architecture"], num_classes=config["num_classes"])
    network.load_state_dict(load_file(str(model_dir / "model.safetensors")))
    network.eval()
    x = torch.from_numpy(images).permute(0, 3, 1, 2).double() / 255.0
    mean = torch.tensor(config["mean"], dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor(config["std"], dtype=torch.float64).view(1, 3, 1, 1)
    x = ((x - mean) / std).float()
    with torch.inference_mode():
        features = network.forward_head(network.forward_features(x), pre_logits=True)
        return network.get_classifier()(features).numpy(), features.numpy()


def test_training_evaluation_server_explainer_and_drift_encoder_agree(inputs):
    model_dir, data, images = inputs
    logits, features = by_hand(model_dir, images)
    expected = torch.softmax(torch.from_numpy(logits).double(), dim=1).numpy()

    # training: the Lightning module on the batches the DataModule gives it
    classifier = load_artifact(model_dir)
    module = Classifier(classifier, Hyperparameters()).eval()
    subset = ProcessedDataset(data.root)
    subset.records = subset.records[:COUNT]
    loader = ProcessedDataModule(subset, subset, batch_size=16, num_workers=0,
                                 augment=False).val_dataloader()
    with torch.inference_mode():
        trained = torch.cat([module(x) for x, _ in loader]).numpy()
    np.testing.assert_allclose(trained, logits, atol=1e-4)

    # the evaluation written at the end of training
    np.testing.assert_allclose(predict(classifier, subset), expected, atol=1e-5)

    # the explainer's logits (in float64, as completeness is checked)
    explainer = Explainer(load_artifact(model_dir), IGSettings(), device=torch.device("cpu"))
    np.testing.assert_allclose(explainer.predict_logits(images), logits, atol=1e-4)

    # the drift encoder on the model's penultimate features
    encoder = classifier_encoder(model_dir, device="cpu")
    np.testing.assert_allclose(encoder.encode(images), features, atol=1e-4)

    # the model server, over HTTP, as an endpoint or Batch Transform calls it
    buffer = io.BytesIO()
    np.save(buffer, images, allow_pickle=False)
    base = model_dir.parent
    with running_server(base) as (_, port):
        status, body, _ = request(port, "POST", "/invocations", buffer.getvalue(),
                                  {"Content-Type": "application/x-npy"})
    assert status == 200, body
    served = np.array([[row["probabilities"][c] for c in classifier.config.class_names]
                       for row in body])
    np.testing.assert_allclose(served, expected, atol=2e-6)  # the server rounds to 6 decimals
    assert (served.argmax(1) == expected.argmax(1)).all()
