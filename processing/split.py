"""Splitting labelled images into train / validation / test without leakage.

Exact duplicates (same bytes) are reduced to their first occurrence before splitting, so one picture
can never sit in two splits. The split is stratified per class and seeded.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from processing.config import SPLITS


def drop_duplicates(digests: list[str], order: list[int], names: list[str]):
    """Keep the first row of each digest in `order`; report the others."""
    first: dict[str, int] = {}
    kept, duplicates = [], []
    for row in order:
        digest = digests[row]
        if digest in first:
            duplicates.append({"path": names[row], "duplicate_of": names[first[digest]],
                               "action": "dropped"})
        else:
            first[digest] = row
            kept.append(row)
    return kept, duplicates


def split_sizes(n: int, fractions: dict[str, float]) -> dict[str, int] | None:
    """How many of a class's n images go to each split; None when n is too small to split."""
    wanted = [s for s in ("validation", "test") if fractions.get(s, 0) > 0]
    if n < 1 + len(wanted):
        return None
    sizes = {s: max(1, round(n * fractions[s])) for s in wanted}
    while sum(sizes.values()) >= n:  # keep at least one training image
        largest = max(sizes, key=sizes.get)
        sizes[largest] -= 1
    sizes["train"] = n - sum(sizes.values())
    return sizes


def stratified_split(
    rows: list[int], labels: list[str], fractions: dict[str, float], seed: int
) -> tuple[dict[str, list[int]], list[dict[str, object]]]:
    """Split `rows` (with labels[row]) per class; classes too small to split all go to train."""
    by_class: dict[str, list[int]] = defaultdict(list)
    for row in rows:
        by_class[labels[row]].append(row)
    result: dict[str, list[int]] = {s: [] for s in SPLITS}
    small = []
    rng = np.random.default_rng(seed)
    for name in sorted(by_class):
        members = by_class[name]
        sizes = split_sizes(len(members), fractions)
        if sizes is None:
            result["train"].extend(members)
            small.append({"class": name, "images": len(members),
                          "action": "too few images to split: all used for training"})
            continue
        shuffled = [members[i] for i in rng.permutation(len(members))]
        start = 0
        for split in ("validation", "test", "train"):
            count = sizes.get(split, 0)
            result[split].extend(shuffled[start:start + count])
            start += count
    return {s: sorted(r) for s, r in result.items()}, small
