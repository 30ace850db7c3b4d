"""Adaptive integrated gradients (shared.attribution.adaptive) and the integer n_steps beside it.

The "kink" model's logit is K x relu(mean brightness - C): along the path from black its gradient is
zero up to the kink, then constant, the hardest kind of integrand for a fixed grid. How many points
an image needs then depends on where its kink falls, so images differ, and the exact answer is
known (the completeness delta is the whole integration error).
"""

import numpy as np
import pytest
import torch
from captum.attr import IntegratedGradients
from torch import nn

from explainability import config as explain_config
from shared.attribution import (
    COMPLETENESS_TOLERANCE,
    FIRST_STEPS,
    MAX_STEPS,
    Explainer,
    IGSettings,
)
from shared.attribution.adaptive import new_nodes, step_levels
from shared.models import ImageClassifier, ModelConfig, create_network

SIZE = 8
CPU = torch.device("cpu")


class Kink(nn.Module):
    """Logits (0, K x relu(mean pixel - C)) for pixels already scaled to 0..1."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = 100.0 * torch.relu(x.mean(dim=(1, 2, 3)) - 0.3)
        return torch.stack([torch.zeros_like(score), score], dim=1)


def kink_explainer(**settings) -> Explainer:
    config = ModelConfig("kink", ["off", "on"], SIZE, [0.0] * 3, [1.0] * 3)
    return Explainer(ImageClassifier(Kink(), config), IGSettings(**settings), device=CPU)


def grey_images(levels) -> np.ndarray:
    return np.stack([np.full((SIZE, SIZE, 3), v, np.uint8) for v in levels])


# kinks from alpha 0.96 (logit gap 1.4) to 0.3 (white, gap 70): 17 to 129 points to converge
LEVELS = [80, 82, 84, 86, 88, 90, 95, 100, 110, 130, 160, 200, 255]


def explain_kinks(explainer: Explainer):
    images = grey_images(LEVELS)
    return explainer.attribute(images, np.ones(len(images), np.int64), np.arange(len(images)))


def counting_gradients(explainer: Explainer) -> list[int]:
    """Record the number of points in every gradient pass the explainer makes."""
    passes: list[int] = []
    gradients = explainer._gradients

    def counted(points, targets):
        passes.append(len(points))
        return gradients(points, targets)

    explainer._gradients = counted
    return passes


def test_grids_are_nested_trapezoids_from_17_points_to_the_cap():
    assert step_levels(MAX_STEPS) == [17, 33, 65, 129, 257, 513, 1025]
    assert step_levels(1000) == [17, 33, 65, 129, 257, 513] and step_levels(17) == [17]
    alphas, previous = set(), 0
    for points in step_levels(129):
        added, weights = new_nodes(points, previous)
        assert not alphas & set(added)  # every point is evaluated once, on the grid it joins
        alphas |= set(added)
        assert sorted(alphas) == pytest.approx(np.linspace(0, 1, points))
        assert weights == pytest.approx(np.full(len(added), 1 / (points - 1))) or not previous
        previous = points
    first_alphas, first_weights = new_nodes(17, 0)
    assert first_weights.sum() == pytest.approx(1.0)  # not captum's riemann_trapezoid: 16/17


def test_each_image_gets_the_steps_it_needs_and_only_failing_images_are_refined():
    explainer = kink_explainer(internal_batch_size=40)
    passes = counting_gradients(explainer)
    a = explain_kinks(explainer)
    assert a.completeness_ok.all()
    assert set(a.steps) <= set(step_levels(MAX_STEPS))
    assert a.steps.min() == FIRST_STEPS and a.steps.max() > 2 * FIRST_STEPS  # they differ
    # nested grids: an image's steps are all the gradients it cost, and nothing else was evaluated
    assert sum(passes) == a.steps.sum()
    # each grid's new points, of every image still refining, share passes of 40 points
    previous, full_passes = 0, 0
    for points in step_levels(MAX_STEPS):
        new_points = (a.steps >= points).sum() * len(new_nodes(points, previous)[0])
        full_passes += -(-new_points // 40)
        previous = points
    assert max(passes) <= 40 and len(passes) == full_passes


def test_a_coarser_grid_fails_completeness_where_the_image_was_refined():
    refined = explain_kinks(kink_explainer())
    first = explain_kinks(kink_explainer(max_steps=FIRST_STEPS))
    needed_more = refined.steps > FIRST_STEPS
    assert needed_more.any()
    assert not first.completeness_ok[needed_more].any() and first.completeness_ok[~needed_more].all()


def test_images_still_above_tolerance_at_the_cap_are_left_there_and_flagged():
    a = explain_kinks(kink_explainer(max_steps=64))  # grids 17 and 33: 64 is not a grid size
    assert (a.steps <= 33).all()
    capped = ~a.completeness_ok
    assert capped.any() and (a.steps[capped] == 33).all()
    assert (a.relative_error[capped] > COMPLETENESS_TOLERANCE).all()


def test_an_integer_n_steps_is_captums_integrated_gradients_as_before():
    config = ModelConfig("resnet10t", ["a", "b"], SIZE * 2, [0.5] * 3, [0.25] * 3)
    torch.manual_seed(0)
    model = ImageClassifier(create_network("resnet10t", 2), config).eval()
    images = np.random.default_rng(4).integers(0, 256, (3, SIZE * 2, SIZE * 2, 3)).astype(np.uint8)
    targets = np.array([0, 1, 1])
    explainer = Explainer(model, IGSettings(n_steps=12), device=CPU)
    a = explainer.attribute(images, targets, np.arange(3))
    pixels = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    expected, delta = IntegratedGradients(explainer.forward).attribute(
        pixels, baselines=torch.zeros_like(pixels), target=torch.from_numpy(targets),
        n_steps=12, method="gausslegendre", return_convergence_delta=True)
    np.testing.assert_allclose(a.values, expected.permute(0, 2, 3, 1).numpy(), rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(a.delta, delta.double().numpy(), rtol=1e-3, atol=1e-4)
    assert a.steps.tolist() == [12, 12, 12] and explainer.settings.rule == "gausslegendre"


def test_adaptive_is_the_default_and_refuses_what_it_does_not_do():
    assert IGSettings().adaptive and IGSettings().max_steps == MAX_STEPS
    assert not IGSettings(n_steps=50).adaptive
    for bad in ({"noise_tunnel": True}, {"method": "gausslegendre"}, {"max_steps": 16}):
        with pytest.raises(ValueError, match="n_steps|max_steps"):
            IGSettings(**bad)
    IGSettings(n_steps=8, noise_tunnel=True, method="riemann_middle")  # fixed steps may


def test_the_flags_constants_are_the_librarys():
    """explainability.config repeats them so flags are checked before torch is imported."""
    assert explain_config.FIRST_STEPS == FIRST_STEPS and explain_config.MAX_STEPS == MAX_STEPS
