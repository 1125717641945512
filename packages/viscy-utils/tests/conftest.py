from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from viscy_utils.testing.fixtures import run_viscy, synthetic_plate, viscy  # noqa: F401


def _make_tracked_embeddings(
    n_tracks: int = 6, n_frames: int = 5, dim: int = 8, seed: int = 0, step: float = 0.05
) -> tuple[np.ndarray, pd.DataFrame]:
    """Embeddings of cells that drift slowly in time from a random start: rows are shuffled."""
    rng = np.random.default_rng(seed)
    starts = rng.normal(size=(n_tracks, dim))
    rows, features = [], []
    for track in range(n_tracks):
        position = starts[track].copy()
        for t in range(n_frames):
            features.append(position.copy())
            rows.append({"fov_name": f"A/{1 + track % 2}/0", "track_id": track, "t": t, "id": track * 100 + t})
            position += step * rng.normal(size=dim)
    order = rng.permutation(len(rows))
    return np.asarray(features)[order], pd.DataFrame(rows).iloc[order].reset_index(drop=True)


@pytest.fixture
def make_tracked_embeddings():
    return _make_tracked_embeddings
