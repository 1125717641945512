import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from viscy_data.sampler import FlexibleBatchSampler


def make_anchors(
    sizes=(3000, 2000, 1000), infected_share=0.3, hours=48, seed=0, index="shuffled", categorical=False
) -> pd.DataFrame:
    """Anchors of experiments a, b, c... of the given sizes, imbalanced conditions, integer HPI 0..hours-1."""
    rng = np.random.default_rng(seed)
    experiment = np.repeat([chr(ord("a") + i) for i in range(len(sizes))], sizes)
    n = len(experiment)
    frame = pd.DataFrame(
        {
            "experiment": pd.Categorical(experiment) if categorical else experiment,
            "condition": np.where(rng.random(n) < infected_share, "infected", "mock"),
            "hours_post_infection": rng.integers(0, hours, n).astype(float),
            "fov_name": "A/1/0",
        }
    )
    if index == "shuffled":  # a non-default index: positions, not labels, must come out
        frame.index = pd.Index([f"cell-{i}" for i in rng.permutation(n)])
    return frame


def epoch_batches(sampler) -> list[list[int]]:
    return list(sampler)


def rows(frame, batch):
    return frame.iloc[batch]


def focal_count(hpi: np.ndarray, window: float) -> int:
    """Largest number of anchors of a batch within +-window of an integer hour (the focal HPI is one)."""
    centres = np.arange(np.floor(hpi.min() - window), np.ceil(hpi.max() + window) + 1)
    return int(max(np.count_nonzero(np.abs(hpi - c) <= window) for c in centres))


# ---------------------------------------------------------------- experiment axis


def test_experiment_pure_batches_drawn_by_size():
    frame = make_anchors()
    sampler = FlexibleBatchSampler(frame, batch_size=32, condition_balanced=False, seed=1, drop_last=True)
    seen = []
    for _ in range(6):  # 6 epochs x 187 batches
        for batch in sampler:
            experiments = rows(frame, batch)["experiment"].unique()
            assert len(experiments) == 1
            seen.append(experiments[0])
    freq = pd.Series(seen).value_counts(normalize=True)
    np.testing.assert_allclose(freq[["a", "b", "c"]], [0.5, 1 / 3, 1 / 6], atol=0.03)


def test_experiment_weights_honoured():
    frame = make_anchors()
    sampler = FlexibleBatchSampler(
        frame, batch_size=32, experiment_weights={"a": 1.0, "c": 3.0}, condition_balanced=False, seed=2
    )
    seen = [rows(frame, batch)["experiment"].iloc[0] for _ in range(6) for batch in sampler]
    freq = pd.Series(seen).value_counts(normalize=True)
    assert "b" not in freq  # absent from the weights: never drawn
    np.testing.assert_allclose(freq[["a", "c"]], [0.25, 0.75], atol=0.03)


def test_not_experiment_aware_mixes_experiments_uniformly():
    frame = make_anchors()
    sampler = FlexibleBatchSampler(frame, batch_size=300, experiment_aware=False, condition_balanced=False, seed=0)
    counts = pd.concat([rows(frame, b)["experiment"] for b in sampler]).value_counts(normalize=True)
    np.testing.assert_allclose(counts[["a", "b", "c"]], [0.5, 1 / 3, 1 / 6], atol=0.02)


# ---------------------------------------------------------------- condition axis


def test_condition_balanced_half_and_half_despite_imbalanced_data():
    frame = make_anchors(infected_share=0.2)
    sampler = FlexibleBatchSampler(frame, batch_size=33, seed=0)
    shares = []
    for batch in sampler:
        infected = int((rows(frame, batch)["condition"] == "infected").sum())
        assert infected in (16, 17)  # 33 / 2, rounded either way
        shares.append(infected / 33)
    assert abs(np.mean(shares) - 0.5) < 0.02


def test_condition_ratio_honoured_per_batch_and_on_average():
    frame = make_anchors(infected_share=0.5)
    sampler = FlexibleBatchSampler(frame, batch_size=50, condition_ratio={"infected": 3.0, "mock": 1.0}, seed=3)
    infected = np.array([(rows(frame, b)["condition"] == "infected").sum() for _ in range(3) for b in sampler])
    assert set(infected) <= {37, 38}  # 37.5 rounded either way
    assert abs(infected.mean() / 50 - 0.75) < 0.01


def test_condition_ratio_zero_leaves_a_condition_out_and_missing_keys_get_the_default():
    frame = make_anchors()
    sampler = FlexibleBatchSampler(frame, batch_size=40, condition_ratio={"infected": 0.0}, seed=0)
    assert all((rows(frame, b)["condition"] == "mock").all() for b in sampler)
    # mock absent from the ratio: 1/2 before normalisation, like the reference
    sampler = FlexibleBatchSampler(frame, batch_size=40, condition_ratio={"infected": 1.5}, seed=0)
    infected = [(rows(frame, b)["condition"] == "infected").sum() for b in sampler]
    assert set(infected) == {30}


def test_balanced_without_experiment_awareness():
    frame = make_anchors(infected_share=0.1)
    sampler = FlexibleBatchSampler(frame, batch_size=64, experiment_aware=False, seed=0)
    assert {int((rows(frame, b)["condition"] == "infected").sum()) for b in sampler} == {32}


# ---------------------------------------------------------------- temporal axis


@pytest.mark.parametrize("global_fraction", [0.0, 0.3, 0.6])
def test_temporal_enrichment_focal_fraction_exact(global_fraction):
    # time points 3 h apart and a 2 h window: the focal window holds exactly one time point
    frame = make_anchors(sizes=(6000, 4000, 2000), hours=16)
    frame["hours_post_infection"] *= 3
    sampler = FlexibleBatchSampler(
        frame,
        batch_size=100,
        condition_balanced=False,
        temporal_enrichment=True,
        temporal_window_hours=2.0,
        temporal_global_fraction=global_fraction,
        seed=4,
    )
    fractions = []
    for batch in sampler:
        assert len(set(batch)) == len(batch)
        count = rows(frame, batch)["hours_post_infection"].value_counts().iloc[0]
        assert abs(count - 100 * (1 - global_fraction)) <= 1
        fractions.append(count / 100)
    assert abs(np.mean(fractions) - (1 - global_fraction)) < 0.01


@pytest.mark.parametrize("global_fraction", [0.0, 0.3, 0.6])
def test_temporal_enrichment_focal_fraction_dense_time(global_fraction):
    frame = make_anchors(sizes=(6000, 4000, 2000), hours=48)
    window = 2.0
    sampler = FlexibleBatchSampler(
        frame,
        batch_size=40,
        condition_balanced=False,
        temporal_enrichment=True,
        temporal_window_hours=window,
        temporal_global_fraction=global_fraction,
        seed=4,
    )
    fractions = []
    for batch in sampler:
        # the busiest +-2 h window: the focal one, plus a few global anchors when another window overlaps it
        count = focal_count(rows(frame, batch)["hours_post_infection"].to_numpy(), window)
        assert -1 <= count - 40 * (1 - global_fraction) <= 4
        fractions.append(count / 40)
    assert abs(np.mean(fractions) - (1 - global_fraction)) < 0.02


def test_temporal_global_part_spans_the_time_course():
    frame = make_anchors(hours=48)
    sampler = FlexibleBatchSampler(
        frame, batch_size=100, condition_balanced=False, temporal_enrichment=True, temporal_global_fraction=0.5
    )
    spans = [np.ptp(rows(frame, b)["hours_post_infection"]) for b in sampler]
    assert np.mean(spans) > 30  # half the batch lies anywhere in 0..47 h


def test_temporal_off_draws_uniformly_in_time():
    frame = make_anchors(hours=48)
    sampler = FlexibleBatchSampler(frame, batch_size=100, condition_balanced=False, seed=0)
    counts = [focal_count(rows(frame, b)["hours_post_infection"].to_numpy(), 2.0) for b in sampler]
    assert np.mean(counts) < 20  # 5 of 48 hours: about 10 per 100, well below any enrichment


def test_focal_hpi_is_drawn_within_the_chosen_experiment():
    frame = make_anchors(sizes=(2000, 2000), hours=10)
    frame.loc[frame["experiment"] == "b", "hours_post_infection"] += 100  # b lives at 100..109 h
    sampler = FlexibleBatchSampler(
        frame, batch_size=40, temporal_enrichment=True, temporal_global_fraction=0.0, temporal_window_hours=1.0
    )
    for batch in sampler:
        selected = rows(frame, batch)
        assert np.ptp(selected["hours_post_infection"]) <= 2.0
        assert selected["experiment"].nunique() == 1


def test_cell_with_no_anchor_in_the_window_uses_the_nearest_time():
    frame = make_anchors(sizes=(4000,), hours=20)
    infected = frame["condition"] == "infected"
    frame.loc[infected, "hours_post_infection"] = np.where(frame.loc[infected, "hours_post_infection"] < 10, 30, 31)
    sampler = FlexibleBatchSampler(
        frame, batch_size=40, temporal_enrichment=True, temporal_global_fraction=0.0, temporal_window_hours=1.0
    )
    for batch in sampler:
        selected = rows(frame, batch)
        assert (selected["condition"] == "infected").sum() == 20
        mock_hpi = selected.loc[selected["condition"] == "mock", "hours_post_infection"]
        if mock_hpi.max() < 19:  # focal time far from 30-31 h: the infected half sits at 30 h, the nearest
            assert set(selected.loc[selected["condition"] == "infected", "hours_post_infection"]) == {30.0}


# ---------------------------------------------------------------- leak axis


@pytest.mark.parametrize(("leaky", "batch_size"), [(0.25, 64), (0.15, 64)])
def test_leak_fraction(leaky, batch_size):
    frame = make_anchors()
    sampler = FlexibleBatchSampler(frame, batch_size=batch_size, leaky=leaky, condition_balanced=False, seed=5)
    leaked = []
    for _ in range(3):
        for batch in sampler:
            counts = rows(frame, batch)["experiment"].value_counts()
            leaked.append(batch_size - counts.iloc[0])
    expected = batch_size * leaky
    assert set(leaked) <= {int(np.floor(expected)), int(np.ceil(expected))}
    assert abs(np.mean(leaked) - expected) < 0.15


# ---------------------------------------------------------------- all axes together


def test_all_axes_compose_in_one_batch():
    frame = make_anchors(sizes=(4000, 3000, 3000), infected_share=0.25, hours=48)
    batch_size, leaky, global_fraction, window = 120, 0.2, 0.3, 2.0
    sampler = FlexibleBatchSampler(
        frame,
        batch_size=batch_size,
        leaky=leaky,
        experiment_weights={"a": 1.0, "b": 1.0, "c": 2.0},
        condition_ratio={"infected": 1.0, "mock": 1.0},
        temporal_enrichment=True,
        temporal_window_hours=window,
        temporal_global_fraction=global_fraction,
        seed=6,
    )
    main, leaked, infected, focal = [], [], [], []
    for _ in range(4):
        for batch in sampler:
            selected = rows(frame, batch)
            counts = selected["experiment"].value_counts()
            main.append(counts.index[0])
            leaked.append(batch_size - counts.iloc[0])
            infected.append((selected["condition"] == "infected").sum())
            focal.append(focal_count(selected["hours_post_infection"].to_numpy(), window))
    # 2 parts x 2 conditions = 4 cells, each rounded either way
    assert max(abs(np.array(infected) - batch_size / 2)) <= 2
    assert max(abs(np.array(leaked) - batch_size * leaky)) <= 1
    assert max(abs(np.array(focal) - batch_size * (1 - global_fraction))) <= 4
    assert abs(np.mean(infected) / batch_size - 0.5) < 0.01
    assert abs(np.mean(leaked) / batch_size - leaky) < 0.01
    assert abs(np.mean(focal) / batch_size - (1 - global_fraction)) < 0.01
    freq = pd.Series(main).value_counts(normalize=True)
    np.testing.assert_allclose(freq[["a", "b", "c"]], [0.25, 0.25, 0.5], atol=0.05)


def test_leaked_anchors_are_condition_balanced_too():
    frame = make_anchors(infected_share=0.2)
    sampler = FlexibleBatchSampler(frame, batch_size=80, leaky=0.5, seed=0)
    for batch in sampler:
        selected = rows(frame, batch)
        main = selected["experiment"].value_counts().index[0]
        leaked = selected[selected["experiment"] != main]
        assert len(leaked) == 40
        assert (leaked["condition"] == "infected").sum() == 20


def test_no_repeated_anchor_within_a_batch_when_strata_are_large():
    frame = make_anchors(sizes=(30000, 20000, 10000), hours=24)
    sampler = FlexibleBatchSampler(frame, batch_size=256, leaky=0.1, temporal_enrichment=True, seed=0)
    assert all(len(set(batch)) == len(batch) for batch in sampler)


def test_small_experiment_repeats_anchors_and_warns(caplog):
    frame = make_anchors(sizes=(500, 10))
    with caplog.at_level("WARNING", logger="viscy_data.sampler"):
        sampler = FlexibleBatchSampler(frame, batch_size=64, condition_balanced=False, seed=0)
    assert "'b' (10)" in caplog.text
    batches = [b for b in sampler if rows(frame, b)["experiment"].iloc[0] == "b"]
    assert batches
    assert all(len(b) == 64 and set(b) <= set(range(500, 510)) for b in batches)


# ---------------------------------------------------------------- determinism and epochs


def test_same_seed_same_batches_other_seed_differs():
    frame = make_anchors()
    first = epoch_batches(FlexibleBatchSampler(frame, batch_size=64, leaky=0.1, temporal_enrichment=True, seed=7))
    again = epoch_batches(FlexibleBatchSampler(frame, batch_size=64, leaky=0.1, temporal_enrichment=True, seed=7))
    other = epoch_batches(FlexibleBatchSampler(frame, batch_size=64, leaky=0.1, temporal_enrichment=True, seed=8))
    assert first == again
    assert first != other


def seed_globals(seed):
    np.random.seed(seed)  # noqa: NPY002 - the legacy global generator the sampler must not touch
    torch.manual_seed(seed)


def test_global_random_state_neither_used_nor_changed():
    frame = make_anchors()
    seed_globals(0)
    first = epoch_batches(FlexibleBatchSampler(frame, batch_size=64, temporal_enrichment=True, seed=1))
    np_state, torch_state = np.random.get_state()[1].copy(), torch.get_rng_state().clone()  # noqa: NPY002
    seed_globals(123)
    assert epoch_batches(FlexibleBatchSampler(frame, batch_size=64, temporal_enrichment=True, seed=1)) == first
    seed_globals(0)
    epoch_batches(FlexibleBatchSampler(frame, batch_size=64, temporal_enrichment=True, seed=1))
    assert (np.random.get_state()[1] == np_state).all()  # noqa: NPY002
    assert torch.equal(torch.get_rng_state(), torch_state)


def test_epoch_advances_by_itself_and_set_epoch_sets_it():
    frame = make_anchors()
    sampler = FlexibleBatchSampler(frame, batch_size=64, seed=0)
    epochs = [epoch_batches(sampler) for _ in range(3)]
    assert epochs[0] != epochs[1] != epochs[2]
    assert sampler.epoch == 3
    sampler.set_epoch(1)
    assert epoch_batches(sampler) == epochs[1]
    fresh = FlexibleBatchSampler(frame, batch_size=64, seed=0)
    fresh.set_epoch(2)
    assert epoch_batches(fresh) == epochs[2]
    assert sampler.epoch == 2


def test_epoch_advances_even_when_stopped_early():
    frame = make_anchors()
    sampler = FlexibleBatchSampler(frame, batch_size=64, seed=0)
    first = next(iter(sampler))  # limit_train_batches stops the generator early
    second = next(iter(sampler))
    assert first != second
    assert sampler.epoch == 2


def test_batches_are_built_lazily(monkeypatch):
    frame = make_anchors()
    sampler = FlexibleBatchSampler(frame, batch_size=8, seed=0)
    built = []
    original = sampler.batch
    monkeypatch.setattr(sampler, "batch", lambda epoch, index: built.append(index) or original(epoch, index))
    iterator = iter(sampler)
    assert built == []
    next(iterator)
    next(iterator)
    assert built == [0, 1]


# ---------------------------------------------------------------- length, drop_last, DDP


@pytest.mark.parametrize(("drop_last", "n_batches", "last"), [(True, 15, 64), (False, 16, 40)])
def test_drop_last_defines_the_epoch(drop_last, n_batches, last):
    frame = make_anchors(sizes=(600, 400))  # 1000 anchors, batches of 64
    sampler = FlexibleBatchSampler(frame, batch_size=64, drop_last=drop_last, seed=0)
    batches = epoch_batches(sampler)
    assert sampler.total_batches == n_batches == len(sampler) == len(batches)
    assert [len(b) for b in batches] == [64] * (n_batches - 1) + [last]
    assert sum(map(len, batches)) == (960 if drop_last else 1000)


@pytest.mark.parametrize("replicas", [1, 2, 3, 4])
@pytest.mark.parametrize("drop_last", [True, False])
def test_ranks_equal_length_disjoint_and_complete(replicas, drop_last):
    frame = make_anchors(sizes=(700, 300, 350))  # 1350 anchors: 21 full batches of 64 (+ 1 of 6)
    kwargs = {"batch_size": 64, "leaky": 0.1, "temporal_enrichment": True, "drop_last": drop_last, "seed": 9}
    reference = FlexibleBatchSampler(frame, **kwargs)
    epoch = [tuple(reference.batch(0, i)) for i in range(reference.total_batches)]
    total = len(epoch)
    assert total == (21 if drop_last else 22)
    per_rank = [
        epoch_batches(FlexibleBatchSampler(frame, num_replicas=replicas, rank=r, **kwargs)) for r in range(replicas)
    ]
    expected_length = -(-total // replicas)
    for rank, batches in enumerate(per_rank):
        assert len(batches) == expected_length == len(FlexibleBatchSampler(frame, num_replicas=replicas, **kwargs))
        assert [tuple(b) for b in batches] == [
            tuple(reference.batch(0, rank + i * replicas)) for i in range(len(batches))
        ]
    yielded = [tuple(b) for batches in per_rank for b in batches]
    assert len(set(yielded)) == len(yielded)  # no batch twice, padding included
    assert set(epoch) <= set(yielded)  # complete


@pytest.mark.parametrize("replicas", [1, 2, 3, 4, 5, 7])
@pytest.mark.parametrize(("n_anchors", "drop_last"), [(7296, True), (7300, False), (200, True), (1000, False)])
def test_padding_batches_are_fresh_draws_not_repeats(replicas, n_anchors, drop_last):
    """Regression: an epoch not divisible by the ranks was padded by repeating its first batches (2 of 114 on 3)."""
    frame = make_anchors(sizes=(n_anchors // 2, n_anchors - n_anchors // 2))
    kwargs = {"batch_size": 64, "drop_last": drop_last, "seed": 1}
    reference = FlexibleBatchSampler(frame, **kwargs)
    total = reference.total_batches
    length = -(-total // replicas)
    per_rank = [
        [tuple(b) for b in epoch_batches(FlexibleBatchSampler(frame, num_replicas=replicas, rank=r, **kwargs))]
        for r in range(replicas)
    ]
    assert [len(batches) for batches in per_rank] == [length] * replicas
    yielded = [batch for batches in per_rank for batch in batches]
    assert len(set(yielded)) == len(yielded) == replicas * length
    epoch = {tuple(reference.batch(0, i)) for i in range(total)}
    padding = set(yielded) - epoch
    assert epoch <= set(yielded)
    assert padding == {tuple(reference.batch(0, i)) for i in range(total, replicas * length)}
    assert all(len(batch) == 64 for batch in padding)  # padding batches are full
    ranks_with_padding = [r for r, batches in enumerate(per_rank) if not set(batches) <= epoch]
    assert ranks_with_padding == list(range(replicas - len(padding), replicas))  # one each, at the end


def test_more_replicas_than_batches_pads_with_fresh_batches():
    frame = make_anchors(sizes=(200,))
    per_rank = [epoch_batches(FlexibleBatchSampler(frame, batch_size=64, num_replicas=4, rank=r)) for r in range(4)]
    assert [len(b) for b in per_rank] == [1, 1, 1, 1]
    assert per_rank[3] != per_rank[0]  # 3 batches: rank 3 gets a fourth batch, not batch 0 again
    assert len(per_rank[3][0]) == 64


def test_resume_inside_the_padding_of_an_epoch():
    frame = make_anchors(sizes=(700, 300, 350))  # 21 batches of 64: rank 1 of 2 ends with a padding batch
    kwargs = {"batch_size": 64, "num_replicas": 2, "rank": 1, "seed": 3}
    full = epoch_batches(FlexibleBatchSampler(frame, **kwargs))
    sampler = FlexibleBatchSampler(frame, **kwargs)
    iterator = iter(sampler)
    head = [next(iterator) for _ in range(len(full) - 1)]
    resumed = FlexibleBatchSampler(frame, **kwargs)
    resumed.load_state_dict(sampler.state_dict())
    assert head + epoch_batches(resumed) == full


# ---------------------------------------------------------------- resume


@pytest.mark.parametrize(("replicas", "k"), [(1, 0), (1, 5), (2, 3), (3, 6)])
def test_resume_mid_epoch_yields_exactly_the_rest(replicas, k):
    frame = make_anchors()
    kwargs = {"batch_size": 64, "leaky": 0.1, "temporal_enrichment": True, "num_replicas": replicas, "seed": 2}
    for rank in range(replicas):
        sampler = FlexibleBatchSampler(frame, rank=rank, **kwargs)
        epoch_batches(sampler)  # epoch 0 done: resume inside epoch 1
        full = epoch_batches(sampler_at(frame, 1, rank, **kwargs))
        iterator = iter(sampler)
        head = [next(iterator) for _ in range(k)]
        state = sampler.state_dict()
        assert state == {"epoch": 1, "batches_yielded": k, "num_replicas": replicas}
        resumed = FlexibleBatchSampler(frame, rank=rank, **kwargs)
        resumed.load_state_dict(state)
        assert resumed.state_dict() == state
        rest = epoch_batches(resumed)
        assert head + rest == full
        assert resumed.state_dict() == {"epoch": 2, "batches_yielded": 0, "num_replicas": replicas}
        assert epoch_batches(resumed) == epoch_batches(sampler_at(frame, 2, rank, **kwargs))


def sampler_at(frame, epoch, rank, **kwargs):
    sampler = FlexibleBatchSampler(frame, rank=rank, **kwargs)
    sampler.set_epoch(epoch)
    return sampler


def test_state_between_epochs_and_at_the_end_of_one():
    frame = make_anchors()
    sampler = FlexibleBatchSampler(frame, batch_size=64)
    assert sampler.state_dict() == {"epoch": 0, "batches_yielded": 0, "num_replicas": 1}
    epoch_batches(sampler)
    assert sampler.state_dict() == {"epoch": 1, "batches_yielded": 0, "num_replicas": 1}
    resumed = FlexibleBatchSampler(frame, batch_size=64)
    resumed.load_state_dict({"epoch": 0, "batches_yielded": len(sampler)})  # saved after the last batch
    assert resumed.epoch == 1
    assert epoch_batches(resumed) == epoch_batches(sampler)


def test_load_state_rejects_other_replica_count_mid_epoch_and_out_of_range():
    frame = make_anchors()
    sampler = FlexibleBatchSampler(frame, batch_size=64, num_replicas=2)
    with pytest.raises(ValueError, match="num_replicas=4"):
        sampler.load_state_dict({"epoch": 0, "batches_yielded": 3, "num_replicas": 4})
    sampler.load_state_dict({"epoch": 5, "batches_yielded": 0, "num_replicas": 4})  # between epochs: fine
    assert sampler.epoch == 5
    with pytest.raises(ValueError, match="exceeds"):
        sampler.load_state_dict({"epoch": 0, "batches_yielded": len(sampler) + 1})


# ---------------------------------------------------------------- index and DataLoader


def test_positions_do_not_depend_on_the_index():
    shuffled = make_anchors(index="shuffled")
    default = shuffled.reset_index(drop=True)
    kwargs = {"batch_size": 64, "leaky": 0.1, "temporal_enrichment": True, "seed": 3}
    batches = epoch_batches(FlexibleBatchSampler(shuffled, **kwargs))
    assert batches == epoch_batches(FlexibleBatchSampler(default, **kwargs))
    assert all(isinstance(i, int) for i in batches[0])
    assert max(max(b) for b in batches) < len(shuffled)


def test_categorical_columns_give_the_same_batches():
    plain = make_anchors()
    categorical = make_anchors(categorical=True)
    kwargs = {"batch_size": 64, "leaky": 0.1, "temporal_enrichment": True, "seed": 3}
    assert epoch_batches(FlexibleBatchSampler(plain, **kwargs)) == epoch_batches(
        FlexibleBatchSampler(categorical, **kwargs)
    )


class RowDataset(Dataset):
    def __init__(self, frame):
        self.frame = frame

    def __len__(self):
        return len(self.frame)

    def __getitem__(self, position):
        return position, self.frame["experiment"].iloc[position]


def test_through_a_dataloader():
    frame = make_anchors()
    kwargs = {"batch_size": 32, "leaky": 0.0, "seed": 4}
    loader = DataLoader(RowDataset(frame), batch_sampler=FlexibleBatchSampler(frame, **kwargs))
    assert len(loader) == len(frame) // 32
    first_epoch = [positions.tolist() for positions, _ in loader]
    second_epoch = [positions.tolist() for positions, _ in loader]
    reference = FlexibleBatchSampler(frame, **kwargs)
    assert first_epoch == epoch_batches(reference)
    assert second_epoch == epoch_batches(reference)
    assert first_epoch != second_epoch
    assert all(len(set(experiments)) == 1 for _, experiments in loader)


def test_importable_from_the_package():
    import viscy_data

    assert viscy_data.FlexibleBatchSampler is FlexibleBatchSampler
    assert "FlexibleBatchSampler" in viscy_data.__all__


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("drop", "option", "column"),
    [
        ("experiment", {}, "'experiment' (for experiment_aware=True)"),
        ("condition", {}, "'condition' (for condition_balanced=True)"),
        ("hours_post_infection", {"temporal_enrichment": True}, "'hours_post_infection' (for temporal_enrichment"),
    ],
)
def test_missing_column_lists_the_columns_present(drop, option, column):
    frame = make_anchors().drop(columns=drop)
    with pytest.raises(ValueError, match="lacks column") as error:
        FlexibleBatchSampler(frame, batch_size=8, **option)
    assert column in str(error.value)
    assert str(list(frame.columns)) in str(error.value)


def test_columns_of_disabled_axes_are_not_needed():
    frame = make_anchors()[["fov_name"]]
    sampler = FlexibleBatchSampler(frame, batch_size=100, experiment_aware=False, condition_balanced=False)
    assert len(epoch_batches(sampler)) == 60


def test_leak_with_one_experiment():
    with pytest.raises(ValueError, match="single experiment \\['a'\\]; set leaky=0"):
        FlexibleBatchSampler(make_anchors(sizes=(100,)), batch_size=8, leaky=0.1)


def test_empty_stratum_names_experiment_and_conditions():
    frame = make_anchors()
    frame.loc[frame["experiment"] == "b", "condition"] = "mock"
    with pytest.raises(ValueError, match="empty stratum: experiment 'b' has no anchors of condition 'infected'") as e:
        FlexibleBatchSampler(frame, batch_size=8)
    assert "its conditions: ['mock']" in str(e.value)
    FlexibleBatchSampler(frame, batch_size=8, experiment_weights={"a": 1.0, "c": 1.0})  # b never drawn: fine
    FlexibleBatchSampler(frame, batch_size=8, condition_ratio={"infected": 0.0})
    only_a_infected = make_anchors(sizes=(100, 100))
    only_a_infected.loc[only_a_infected["experiment"] == "b", "condition"] = "mock"
    with pytest.raises(ValueError, match="'a' leaks anchors of condition 'infected' from other experiments"):
        FlexibleBatchSampler(only_a_infected, batch_size=8, leaky=0.2, experiment_weights={"a": 1.0})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 0}, "batch_size must be an integer >= 1, got 0"),
        ({"batch_size": 2.5}, "batch_size must be an integer"),
        ({"experiment_weights": {"a": 1.0, "z": 1.0}}, "unknown experiments \\['z'\\]; the experiments are"),
        ({"experiment_weights": {"a": -1.0}}, "non-negative"),
        ({"condition_ratio": {"sick": 1.0}}, "unknown conditions \\['sick'\\]; the conditions are"),
        ({"leaky": 1.0}, "leaky must be a number in \\[0, 1\\)"),
        ({"temporal_global_fraction": 1.5}, "temporal_global_fraction"),
        ({"temporal_window_hours": -1.0}, "temporal_window_hours"),
        ({"num_replicas": 2, "rank": 2}, "rank must be in \\[0, num_replicas=2\\)"),
        ({"seed": -1}, "seed must be an integer >= 0"),
        ({"batch_size": 10_000}, "fewer than batch_size=10000, and drop_last=True"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FlexibleBatchSampler(make_anchors(), **{"batch_size": 8, **kwargs})


@pytest.mark.parametrize(
    ("ignored", "axis_off", "message"),
    [
        ({"leaky": 0.2}, {"experiment_aware": False}, "leaky=0.2 is ignored because experiment_aware=False"),
        (
            {"experiment_weights": {"a": 1.0, "z": 2.0}},
            {"experiment_aware": False},
            "experiment_weights={'a': 1.0, 'z': 2.0} is ignored because experiment_aware=False",
        ),
        (
            {"condition_ratio": {"mock": 3.0}},
            {"condition_balanced": False},
            "condition_ratio={'mock': 3.0} is ignored because condition_balanced=False",
        ),
    ],
)
def test_option_of_a_disabled_axis_warns_and_is_ignored(ignored, axis_off, message):
    """Regression: these raised, while the reference ignores them (so its configs with them failed here)."""
    frame = make_anchors()
    kwargs = {"batch_size": 16, "temporal_enrichment": True, "seed": 5, **axis_off}
    with pytest.warns(UserWarning, match=re.escape(message)):
        sampler = FlexibleBatchSampler(frame, **kwargs, **ignored)
    assert epoch_batches(sampler) == epoch_batches(FlexibleBatchSampler(frame, **kwargs))


def test_bad_values_in_columns():
    frame = make_anchors()
    frame.iloc[3, frame.columns.get_loc("hours_post_infection")] = np.nan
    with pytest.raises(ValueError, match="'hours_post_infection' has 1 missing"):
        FlexibleBatchSampler(frame, batch_size=8, temporal_enrichment=True)
    frame = make_anchors()
    frame.iloc[:2, frame.columns.get_loc("experiment")] = None
    with pytest.raises(ValueError, match="'experiment' has 2 missing values"):
        FlexibleBatchSampler(frame, batch_size=8)
    with pytest.raises(TypeError, match="DataFrame"):
        FlexibleBatchSampler(frame.to_numpy(), batch_size=8)
    with pytest.raises(ValueError, match="empty"):
        FlexibleBatchSampler(frame.iloc[:0], batch_size=8)


def test_readme_example_runs_and_says_what_it_prints(capsys):
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    code = readme.split("## Batches for contrastive learning", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    exec(code, {})  # the README's own example
    assert capsys.readouterr().out.splitlines() == ["1 [4, 4]", "10"]


def test_a_distributed_sampler_in_place_of_the_anchors_names_use_distributed_sampler():
    """Regression: Lightning rebuilding the batch sampler around its DistributedSampler got a bare type error."""
    injected = DistributedSampler(range(10), num_replicas=2, rank=0)
    with pytest.raises(TypeError, match=r"got a DistributedSampler .* Trainer\(use_distributed_sampler=False\)"):
        FlexibleBatchSampler(injected, batch_size=2, drop_last=False)
