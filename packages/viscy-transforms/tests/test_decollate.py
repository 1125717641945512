import torch

from viscy_transforms import Decollate


def test_batch_becomes_a_list_of_samples(make_batch):
    batch = make_batch(3, 2, 8, 8)
    samples = Decollate()(batch)
    assert len(samples) == 3
    for sample, expected in zip(samples, batch, strict=True):
        assert torch.equal(sample, expected)


def test_single_item_batch():
    samples = Decollate()(torch.ones(1, 2, 4))
    assert len(samples) == 1
    assert samples[0].shape == (2, 4)


def test_dict_batch_with_short_entries_is_padded():
    batch = {"image": torch.zeros(2, 1, 3), "label": [5]}
    samples = Decollate(pad_batch=True, fill_value=-1)(batch)
    assert [sample["label"] for sample in samples] == [5, -1]
