"""The integrated-gradients picture of one uploaded image, from shared.attribution: the same
explainer, settings and three-panel heatmap the explainability job draws for its gallery."""

from __future__ import annotations

import numpy as np

from shared.attribution import Explainer, IGSettings, heatmap_png


def make_explainer(classifier) -> Explainer:
    """The job's defaults: adaptive steps until completeness holds, black baseline."""
    return Explainer(classifier, IGSettings())


def overlay_png(explainer: Explainer, image: np.ndarray, name: str) -> bytes:
    """PNG of `image` (size x size x 3 uint8), its attributions for the predicted class, overlay."""
    images = image[None]
    logits = explainer.predict_logits(images)
    target = int(logits[0].argmax())
    a = explainer.attribute(images, np.array([target]), [0], logits)
    probability = float(np.exp(logits[0, target] - np.logaddexp.reduce(logits[0])))
    title = (f"{name}: predicted {explainer.config.class_names[target]} ({probability:.1%}),"
             f" delta {float(a.delta[0]):+.3g} ({int(a.steps[0])} steps)")
    return heatmap_png(image, a.values[0], title)
