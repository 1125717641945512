import torch

from viscy_transforms import RandInvertIntensityd


def test_prob_one_negates_every_key():
    sample = {"index": 1, "source": torch.tensor([1.0, -2.0]), "target": torch.tensor([3.0])}
    out = RandInvertIntensityd(keys=["source", "target"], prob=1.0)(sample)
    assert out["source"].tolist() == [-1.0, 2.0]
    assert out["target"].tolist() == [-3.0]
    assert out["index"] == 1
    assert sample["source"].tolist() == [1.0, -2.0]


def test_prob_zero_changes_nothing():
    sample = {"source": torch.tensor([1.0])}
    assert torch.equal(RandInvertIntensityd(keys="source", prob=0.0)(sample)["source"], sample["source"])


def test_one_decision_for_all_keys_at_the_given_rate():
    invert = RandInvertIntensityd(keys=["source", "target"], prob=0.3).set_random_state(seed=0)
    sample = {"source": torch.ones(2), "target": torch.ones(3)}
    decisions = []
    for _ in range(200):
        out = invert(sample)
        assert bool((out["source"] < 0).all()) == bool((out["target"] < 0).all())
        decisions.append(bool((out["source"] < 0).all()))
    assert 40 <= sum(decisions) <= 80


def test_seeds_reproduce():
    sample = {"source": torch.ones(1)}
    invert = RandInvertIntensityd("source", prob=0.5).set_random_state(seed=2)
    first = [invert(sample)["source"].item() for _ in range(20)]
    invert.set_random_state(seed=2)
    assert [invert(sample)["source"].item() for _ in range(20)] == first
    assert len(set(first)) == 2
