import anndata as ad
import numpy as np
import pandas as pd
import pytest

from viscy_utils.evaluation.clustering import (
    clustering_evaluation,
    compare_time_offset,
    knn_accuracy,
    pairwise_distance_matrix,
    rank_nearest_neighbors,
    select_block,
)
from viscy_utils.evaluation.distance import calculate_cosine_similarity_cell, compute_track_displacement
from viscy_utils.evaluation.smoothness import (
    compute_embeddings_smoothness,
    compute_piece_wise_distance,
    find_distribution_peak,
)


def _adata(features, obs):
    obs = obs.copy()
    obs.index = obs.index.astype(str)
    return ad.AnnData(X=features.astype(np.float32), obs=obs)


def test_smooth_tracks_score_low_and_row_order_does_not_matter(make_tracked_embeddings):
    features, obs = make_tracked_embeddings(n_tracks=8, n_frames=6, step=0.05)
    stats, distributions, per_track = compute_embeddings_smoothness(_adata(features, obs))
    assert stats["smoothness_score"] < 0.2
    assert stats["dynamic_range"] > 0
    assert len(distributions["adjacent_frame_distribution"]) == 8 * 5
    assert len(distributions["random_frame_distribution"]) == 8 * 5
    assert per_track["n_pairs"].tolist() == [5] * 8
    # regression: rows were assumed to be time-ordered; these are shuffled, and sorting them gives the same result
    order = np.lexsort((obs["t"], obs["track_id"]))
    sorted_stats, _, _ = compute_embeddings_smoothness(_adata(features[order], obs.iloc[order].reset_index(drop=True)))
    assert sorted_stats["adjacent_frame_mean"] == pytest.approx(stats["adjacent_frame_mean"])


def test_jumpy_tracks_score_near_one(make_tracked_embeddings):
    features, obs = make_tracked_embeddings(n_tracks=8, n_frames=6, step=0.05)
    rng = np.random.default_rng(5)
    stats, _, _ = compute_embeddings_smoothness(_adata(rng.normal(size=features.shape), obs))
    assert 0.7 < stats["smoothness_score"] < 1.3


def test_smoothness_is_reproducible_and_needs_tracks(make_tracked_embeddings):
    features, obs = make_tracked_embeddings()
    first, _, _ = compute_embeddings_smoothness(_adata(features, obs), random_seed=3)
    second, _, _ = compute_embeddings_smoothness(_adata(features, obs), random_seed=3)
    assert first == second
    single = obs.assign(track_id=np.arange(len(obs)))
    with pytest.raises(ValueError, match="two frames"):
        compute_embeddings_smoothness(_adata(features, single))


def test_smoothness_memory_grows_linearly_not_quadratically():
    # regression: the reference built the full N x N distance matrix (3.2 GB of float64 here)
    import tracemalloc

    rng = np.random.default_rng(0)
    n_tracks, n_frames = 2_000, 10
    features = rng.normal(size=(n_tracks * n_frames, 4))
    obs = pd.DataFrame(
        {
            "fov_name": "A/1/0",
            "track_id": np.repeat(np.arange(n_tracks), n_frames),
            "t": np.tile(np.arange(n_frames), n_tracks),
        }
    )
    adata = _adata(features, obs)
    tracemalloc.start()
    try:
        stats, _, _ = compute_embeddings_smoothness(adata)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    n = n_tracks * n_frames
    assert peak < n * n * 8 / 20
    assert np.isfinite(stats["smoothness_score"])


def test_piece_wise_distance_sorts_by_time():
    obs = pd.DataFrame({"fov_name": ["A/1/0"] * 3, "track_id": [0, 0, 0], "t": [2, 0, 1]})
    distances = np.array([[0.0, 5.0, 1.0], [5.0, 0.0, 2.0], [1.0, 2.0, 0.0]])
    piece_wise, ranks = compute_piece_wise_distance(obs, distances, distances / 5)
    # time order is rows 1 (t=0), 2 (t=1), 0 (t=2)
    assert piece_wise == [[2.0, 1.0]]
    assert ranks == [[0.4, 0.2]]


def test_find_distribution_peak():
    rng = np.random.default_rng(0)
    data = np.concatenate([rng.normal(1, 0.1, 1000), rng.normal(5, 0.1, 200)])
    assert find_distribution_peak(data) == pytest.approx(1, abs=0.1)
    assert find_distribution_peak(data, method="histogram") == pytest.approx(1, abs=0.15)
    with pytest.raises(ValueError, match="kde_robust"):
        find_distribution_peak(data, method="mode")


def test_track_displacement_grows_with_lag_for_drifting_cells():
    rng = np.random.default_rng(0)
    rows, features = [], []
    for track in range(4):
        direction = rng.normal(size=6)
        for t in [3, 0, 2, 1, 4]:  # shuffled time order
            features.append(t * direction)
            rows.append({"fov_name": "A/1/0", "track_id": track, "t": t})
    adata = _adata(np.asarray(features), pd.DataFrame(rows))
    displacement = compute_track_displacement(adata, distance_metric="euclidean")
    assert list(displacement) == [1, 2, 3, 4]
    assert [len(v) for v in displacement.values()] == [16, 12, 8, 4]
    means = [np.mean(v) for v in displacement.values()]
    assert means == sorted(means)
    # straight-line motion: distance at lag k is k times the lag-1 distance of that track
    assert np.mean(displacement[4]) == pytest.approx(4 * np.mean(displacement[1]))


def test_cosine_similarity_to_first_frame():
    obs = pd.DataFrame({"fov_name": ["/A/1/0"] * 3, "track_id": [7, 7, 7], "t": [2, 0, 1]})
    features = np.array([[-1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    t, similarity = calculate_cosine_similarity_cell(_adata(features, obs), "A/1/0", 7)
    assert t.tolist() == [0, 1, 2]
    assert similarity == pytest.approx([1.0, 0.0, -1.0])
    with pytest.raises(KeyError, match="Track 8"):
        calculate_cosine_similarity_cell(_adata(features, obs), "A/1/0", 8)


def test_knn_accuracy_is_scored_on_held_out_folds():
    # regression: the reference scored the classifier on its own training data (k=1 gives 100% on noise)
    rng = np.random.default_rng(0)
    noise = rng.normal(size=(200, 5))
    labels = rng.integers(0, 2, 200)
    assert knn_accuracy(noise, labels, k=1) < 0.65
    separable = np.concatenate([rng.normal(0, 1, (100, 5)), rng.normal(6, 1, (100, 5))])
    assert knn_accuracy(separable, np.repeat([0, 1], 100), k=5) > 0.95
    groups = np.repeat(np.arange(40), 5)
    assert knn_accuracy(separable, np.repeat([0, 1], 100), k=5, groups=groups) > 0.95


@pytest.mark.parametrize("metric", ["cosine", "euclidean", "cityblock"])
def test_pairwise_distance_matrix_matches_scipy(metric):
    from scipy.spatial.distance import cdist

    features = np.random.default_rng(0).normal(size=(12, 4)).astype(np.float32)
    expected = cdist(features.astype(np.float64), features.astype(np.float64), metric=metric)
    np.testing.assert_allclose(pairwise_distance_matrix(features, metric, device="cpu"), expected, atol=1e-10)
    np.testing.assert_allclose(pairwise_distance_matrix(features, metric, device=None), expected, atol=1e-10)


def test_pairwise_distance_falls_back_to_scipy_without_cuda():
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available")
    features = np.random.default_rng(0).normal(size=(5, 3))
    np.testing.assert_allclose(
        pairwise_distance_matrix(features, device="cuda"), pairwise_distance_matrix(features, device="cpu"), atol=1e-12
    )


def test_rank_select_and_offset_helpers():
    distances = np.array([[0.0, 2.0, 1.0], [2.0, 0.0, 3.0], [1.0, 3.0, 0.0]])
    np.testing.assert_array_equal(rank_nearest_neighbors(distances, normalize=False), [[0, 2, 1], [1, 0, 2], [1, 2, 0]])
    np.testing.assert_allclose(rank_nearest_neighbors(distances)[0], [0, 1, 0.5])
    np.testing.assert_array_equal(select_block(distances, np.array([0, 2])), [[0, 1], [1, 0]])
    np.testing.assert_array_equal(compare_time_offset(distances, 1), [2.0, 3.0])


def test_clustering_evaluation():
    rng = np.random.default_rng(0)
    embeddings = np.concatenate([rng.normal(0, 0.05, (30, 2)), rng.normal(5, 0.05, (30, 2))])
    labels = np.repeat([0, 1], 30)
    assert clustering_evaluation(embeddings, labels, "nmi") == pytest.approx(1.0)
    assert clustering_evaluation(embeddings, labels, "ari") == pytest.approx(1.0)
    with pytest.raises(ValueError, match="'nmi' or 'ari'"):
        clustering_evaluation(embeddings, labels, "purity")
