"""The MMD² permutation test, every permutation evaluated from one pass over the kernel matrix.

alibi-detect's `MMDDrift` (PyTorch backend) permutes the pooled N x N kernel matrix and sums its
blocks once per permutation: 100 copies of an N x N matrix, which at 2,000 + 2,000 images took
longer than featurising them. This module computes the same statistic for every permutation at
once. With a 0/1 vector z marking the rows labelled "test" and K the pooled kernel matrix with a
zero diagonal (as alibi-detect uses it), every block sum of MMD² is a quadratic form in z:

    S_yy = zᵀKz,   S_xy = 1ᵀKz - zᵀKz,   S_xx = 1ᵀK1 - 2·1ᵀKz + zᵀKz

so one product K @ Z, Z holding the observed split and all permuted ones as columns, gives all of
them. K is built a block of rows at a time and never held whole, so memory is O(N·permutations)
rather than O(N²); and as K is symmetric only the blocks on and right of its diagonal are built and
multiplied (zᵀKz counts each block right of the diagonal twice), which halves the work. A column
of ones in Z makes the same product give K's row sums, for 1ᵀKz and 1ᵀK1. The kernel and K @ Z
are float32, as alibi-detect computes them on float32 features (twice the speed of float64 on a
CPU); their per-row results, whose totals cancel in S_xx, are summed in float64, so the statistics
agree with a float64 computation to ~2e-8 at 2,000 + 8,000 features, under a thousandth of the
null's spread.

The kernel, bandwidth, unbiased estimator, p-value and threshold are alibi-detect's definitions
(`GaussianRBF`, `mmd2_from_kernel_matrix`, `MMDDriftTorch.score`); tests check the figures against
alibi-detect itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

BLOCK_ROWS = 256  # rows of K built at a time: 256 x N floats stay in the cache (1,024 was 2x slower)
MIN_SAMPLES = 2  # the unbiased MMD² needs two samples on each side
DISTANCE_FLOOR = 1e-30  # alibi-detect clamps squared distances here before the exponential


@dataclass(frozen=True)
class MMDResult:
    """One test: the observed MMD², its permutation null and what follows from them."""

    p_value: float
    distance: float  # unbiased MMD² between reference and test
    threshold: float  # the MMD² above which the test flags drift at the configured p-value
    null: np.ndarray  # MMD² of every permuted split, for plots
    n_reference: int
    n_test: int


def squared_distances(x: torch.Tensor, y: torch.Tensor,
                      out: torch.Tensor | None = None) -> torch.Tensor:
    """‖x_i - y_j‖² for every pair, as alibi-detect's `squared_pairwise_distance` computes it."""
    x2 = x.pow(2).sum(dim=-1, keepdim=True)
    y2 = y.pow(2).sum(dim=-1, keepdim=True)
    if out is None:
        out = torch.empty(len(x), len(y), dtype=x.dtype, device=x.device)
    return torch.addmm(y2.T, x, y.T, alpha=-2, out=out).add_(x2).clamp_min_(DISTANCE_FLOOR)


def median_bandwidth(reference: np.ndarray) -> list[float]:
    """The bandwidth alibi-detect's MMDDrift infers from the reference (GaussianRBF's median rule:
    sigma² is half the median squared distance between distinct reference rows).

    Written out, in alibi-detect's arithmetic, so that fitting a detector does not import it
    (seconds: it pulls in transformers); `tests/test_monitoring.py` checks it against alibi-detect.
    """
    x = torch.from_numpy(np.ascontiguousarray(reference, dtype=np.float32))
    n = len(x)
    ordered = squared_distances(x, x).flatten().sort().values
    return [float((0.5 * ordered[n + (n * n - n) // 2 - 1]) ** 0.5)]


def gaussian_kernel(x: torch.Tensor, y: torch.Tensor, sigma: torch.Tensor,
                    out: torch.Tensor | None = None) -> torch.Tensor:
    """alibi-detect's GaussianRBF: the mean over bandwidths of exp(-‖x - y‖² / (2σ²)).

    Written out here so that serving does not import alibi-detect (seconds of start-up, and its
    licence); `tests/test_monitoring.py` checks it against `GaussianRBF` itself. `out` reuses a
    buffer: on a CPU a fresh matrix per block costs more in page faults than the arithmetic.
    """
    dist = squared_distances(x, y, out)
    gammas = 1.0 / (2.0 * sigma.to(dist.dtype) ** 2)
    if len(gammas) == 1:
        return dist.mul_(-gammas[0]).exp_()  # in place
    return dist.copy_(torch.stack([torch.exp(-gamma * dist) for gamma in gammas]).mean(dim=0))


def split_matrix(n_reference: int, n_test: int, permutations: int,
                 generator: torch.Generator) -> torch.Tensor:
    """N x (1 + permutations) 0/1 columns: the observed split (test rows last), then random ones.

    A random split is what alibi-detect's `randperm` of the pooled matrix amounts to: a uniformly
    drawn subset of n_test rows labelled "test". float32 holds 0 and 1 exactly, in half the memory.
    """
    n_pool = n_reference + n_test
    splits = torch.zeros(n_pool, 1 + permutations, dtype=torch.float32)
    splits[n_reference:, 0] = 1.0
    for column in range(1, permutations + 1):  # randperm: ~15x faster than argsorting uniforms
        splits[torch.randperm(n_pool, generator=generator)[:n_test], column] = 1.0
    return splits


def splits_from_orders(orders: list[torch.Tensor], n_reference: int, n_test: int) -> torch.Tensor:
    """The split matrix for given permutations of the pooled rows, read as alibi-detect reads them
    (the last n_test rows of a permuted matrix are "test"): to replay its exact permutations."""
    n_pool = n_reference + n_test
    splits = torch.zeros(n_pool, 1 + len(orders), dtype=torch.float32)
    splits[n_reference:, 0] = 1.0
    for column, order in enumerate(orders, start=1):
        splits[torch.as_tensor(order)[-n_test:], column] = 1.0
    return splits


def mmd2_statistics(pool: torch.Tensor, n_test: int, sigma: torch.Tensor, splits: torch.Tensor,
                    block_rows: int = BLOCK_ROWS) -> torch.Tensor:
    """Unbiased MMD² for each column of `splits` (1 marks a test row) over the pooled features."""
    n_pool = len(pool)
    n_ref = n_pool - n_test
    pool = pool.to(torch.float32)
    # 0/1 splits, exact in float32, and a column of ones: its products are K's row sums, so
    # 1ᵀKz and 1ᵀK1 come from the same matrix products as zᵀKz (summing the kernel blocks
    # separately, in float64, took 30% of the test at 10,000 images)
    ones = torch.ones(n_pool, 1, dtype=torch.float32, device=pool.device)
    z1 = torch.cat([splits.to(device=pool.device, dtype=torch.float32), ones], dim=1)
    s_yy = torch.zeros(z1.shape[1] - 1, dtype=torch.float64, device=pool.device)
    s_1z = torch.zeros_like(s_yy)
    s_11 = torch.zeros((), dtype=torch.float64, device=pool.device)
    buffer = torch.empty(min(block_rows, n_pool) * n_pool, dtype=torch.float32, device=pool.device)
    for start in range(0, n_pool, block_rows):
        stop = min(start + block_rows, n_pool)
        width = stop - start
        # K is symmetric, so a block of rows is computed against the columns from `start` on only:
        # its diagonal block D, and the part R right of it, which also stands for its mirror below.
        out = buffer[: width * (n_pool - start)].view(width, n_pool - start)
        block = gaussian_kernel(pool[start:stop], pool[start:], sigma, out=out)
        rows = torch.arange(width, device=pool.device)
        block[rows, rows] = 0.0  # zero diagonal: the unbiased estimator leaves out i == j
        d = (block[:, :width] @ z1[start:stop]).double()
        r = (block[:, width:] @ z1[stop:]).double()
        z = z1[start:stop, :-1].double()
        # these rows' share of each quadratic form: D once, R twice (itself and its mirror);
        # in uᵀKv = Σ uᵢ(Kv)ᵢ the mirror's share of 1ᵀKz is zᵀ(R1), R's row sums times z
        s_yy += (z * (d[:, :-1] + 2.0 * r[:, :-1])).sum(dim=0)
        s_1z += (d[:, :-1] + r[:, :-1]).sum(dim=0) + r[:, -1] @ z
        s_11 += d[:, -1].sum() + 2.0 * r[:, -1].sum()
    s_xy = s_1z - s_yy
    s_xx = s_11 - 2.0 * s_1z + s_yy
    return (s_xx / (n_ref * (n_ref - 1)) + s_yy / (n_test * (n_test - 1))
            - 2.0 * s_xy / (n_ref * n_test))


def permutation_test(reference: np.ndarray, test: np.ndarray, sigma: list[float], *,
                     permutations: int = 100, p_value: float = 0.05, seed: int = 0,
                     device: str | torch.device = "cpu",
                     splits: torch.Tensor | None = None) -> MMDResult:
    """Test whether `test` features come from the distribution of `reference` features.

    The permutations are drawn from `seed`, so a detector gives the same p-value for the same batch
    on every run, in any process. `splits` (from `splits_from_orders`) replaces them, to replay
    another implementation's permutations exactly.
    """
    n_ref, n_test = len(reference), len(test)
    if n_ref < MIN_SAMPLES or n_test < MIN_SAMPLES:
        raise ValueError(f"the MMD test needs at least {MIN_SAMPLES} reference and {MIN_SAMPLES}"
                         f" test samples, got {n_ref} and {n_test}")
    if splits is None:
        if permutations < 1:
            raise ValueError("permutations must be at least 1")
        splits = split_matrix(n_ref, n_test, permutations, torch.Generator().manual_seed(seed))
    permutations = splits.shape[1] - 1
    pool = torch.from_numpy(np.concatenate([reference, test]).astype(np.float32)).to(device)
    sigma_t = torch.tensor(sigma, dtype=torch.float64, device=device)
    stats = mmd2_statistics(pool, n_test, sigma_t, splits).cpu()
    del pool  # freed before the null is copied out (below)
    observed, null = stats[0], stats[1:]
    p = float((observed <= null).to(torch.float64).mean())
    threshold = float(torch.sort(null, descending=True).values[int(p_value * permutations)])
    # A plain copy, not a view keeping the tensor: a caller keeping many results (one per window)
    # would otherwise pin the heap around each test's freed buffers (200 windows of 100 stages
    # features kept 1.7-3.4 kB per image, measured; 0.5-0.9 kB with the copy).
    return MMDResult(p, float(observed), threshold, null.numpy().copy(), n_ref, n_test)
