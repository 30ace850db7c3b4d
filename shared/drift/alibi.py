"""The only module that imports alibi-detect (Business Source License 1.1 since 0.11.5).

Kept behind this small adapter so the library can be replaced without touching the components, and
imported lazily: `import alibi_detect` pulls in transformers and takes several seconds, which train
mode pays once and serve mode not at all (it reuses the bandwidth stored with the detector).
"""

from __future__ import annotations

import warnings
from importlib import metadata
from typing import Any

import numpy as np
import torch


def version() -> str:
    try:
        return metadata.version("alibi-detect")
    except metadata.PackageNotFoundError:
        return "not installed"


def installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("alibi_detect") is not None


def _quietly_import(module: str) -> Any:
    import importlib

    with warnings.catch_warnings():  # its import-time deprecation noise is not ours to act on
        warnings.simplefilter("ignore")
        return importlib.import_module(module)


def infer_sigma(reference: np.ndarray) -> list[float]:
    """The kernel bandwidth alibi-detect's MMDDrift infers from the reference (median heuristic).

    Done with its own GaussianRBF, exactly as `MMDDriftTorch` does at construction, so a detector
    fitted here uses the bandwidth alibi-detect would have used on the same features.
    """
    kernels = _quietly_import("alibi_detect.utils.pytorch.kernels")
    kernel = kernels.GaussianRBF()
    x = torch.from_numpy(np.ascontiguousarray(reference))
    with torch.no_grad():
        kernel(x, x, infer_sigma=True)
    return [float(s) for s in kernel.sigma.detach().cpu().reshape(-1)]


def kernel_matrix(x: np.ndarray, y: np.ndarray, sigma: list[float]) -> np.ndarray:
    """alibi-detect's GaussianRBF kernel matrix for a fixed bandwidth (to check ours against)."""
    kernels = _quietly_import("alibi_detect.utils.pytorch.kernels")
    kernel = kernels.GaussianRBF(sigma=torch.tensor(sigma, dtype=torch.float64))
    with torch.no_grad():
        return kernel(torch.from_numpy(x), torch.from_numpy(y)).cpu().numpy()


def mmd_drift_predict(reference: np.ndarray, test: np.ndarray, *, p_value: float = 0.05,
                      permutations: int = 100, seed: int | None = None) -> dict[str, float]:
    """alibi-detect's own `MMDDrift(...).predict()` on features: the reference computation.

    Used by tests and the benchmark to show the fast test gives the same answers; it permutes the
    full kernel matrix once per permutation, so it is slow on large batches.
    """
    cd = _quietly_import("alibi_detect.cd")
    if seed is not None:
        torch.manual_seed(seed)  # alibi-detect draws its permutations from torch's global RNG
    detector = cd.MMDDrift(np.ascontiguousarray(reference), backend="pytorch", p_val=p_value,
                           n_permutations=permutations, device="cpu")
    data = detector.predict(np.ascontiguousarray(test))["data"]
    return {"drift": bool(data["is_drift"]), "p_value": float(data["p_val"]),
            "distance": float(data["distance"]), "threshold": float(data["distance_threshold"]),
            "sigma": [float(s) for s in detector._detector.kernel.sigma.detach().reshape(-1)]}


def permuted_mmd2(reference: np.ndarray, test: np.ndarray, sigma: list[float],
                  orders: list[np.ndarray]) -> list[float]:
    """MMD² for given permutations of the pooled samples, computed the way `MMDDriftTorch.score`
    does (its kernel, zeroed diagonal, permuted matrix, `mmd2_from_kernel_matrix`).

    With the same permutations as the fast test, the two must agree to rounding: this is the exact
    cross-check of `shared.drift.mmd`, free of permutation noise.
    """
    distance = _quietly_import("alibi_detect.utils.pytorch.distance")
    pool = torch.from_numpy(np.concatenate([reference, test]).astype(np.float64))
    kernel = torch.from_numpy(kernel_matrix(pool.numpy(), pool.numpy(), sigma))
    kernel = kernel - torch.diag(kernel.diag())
    stats = []
    for order in orders:
        idx = torch.as_tensor(order)
        stats.append(float(distance.mmd2_from_kernel_matrix(kernel[idx][:, idx], len(test),
                                                            permute=False, zero_diag=False)))
    return stats
