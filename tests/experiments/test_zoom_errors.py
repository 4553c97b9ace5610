"""The boundary-error breakdown of the zoom benchmark (experiments/zoom_errors.py): its pure parts."""

from __future__ import annotations

import numpy as np
import pytest

from experiments.zoom_errors import GROSS_FRAMES, profile, shared_misses


def test_a_shared_miss_is_far_in_every_run_and_on_the_same_side():
    rng = np.random.default_rng(0)
    runs = [rng.normal(0, 20, size=(3, 40, 2)) for _ in range(3)]
    runs[1][0, 0, 0] = np.nan  # unmatched in one run: not shared
    found = shared_misses(runs)
    for index in np.ndindex(runs[0].shape):
        values = [run[index] for run in runs]
        far = all(abs(v) > GROSS_FRAMES for v in values)  # NaN compares False
        same = all(v > 0 for v in values) or all(v < 0 for v in values)
        assert found[index] == (far and same), (index, values)
    assert found.any() and not found.all()


def test_the_profile_counts_only_matched_boundaries():
    errors = np.array([[1.0, -2.0], [np.nan, 20.0], [-16.0, 3.0]])
    summary = profile(errors)
    assert summary["n"] == 5
    assert summary["median_abs"] == 3.0
    assert summary["near"] == pytest.approx(3 / 5) and summary["gross"] == pytest.approx(2 / 5)
    assert summary["std"] == pytest.approx(np.std([1, -2, 20, -16, 3]))
    assert profile(np.full((2, 2), np.nan))["std"] is None
