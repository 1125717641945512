import pytest
import torch

from viscy_transforms import StackChannelsd


def _sample():
    return {
        "index": ("A/1/0", 0, 2),
        "norm_meta": {"Phase": {}},
        "Phase": torch.zeros(1, 2, 3),
        "Nuclei": torch.ones(1, 2, 3),
        "Membrane": torch.full((1, 2, 3), 2.0),
    }


def test_channels_are_concatenated_in_order_and_other_entries_kept():
    """The reference dropped index, norm_meta and every other entry."""
    sample = _sample()
    out = StackChannelsd({"source": ["Phase"], "target": ["Membrane", "Nuclei"]})(sample)
    assert set(out) == {"index", "norm_meta", "source", "target"}
    assert out["index"] is sample["index"]
    assert out["norm_meta"] is sample["norm_meta"]
    assert out["source"].shape == (1, 2, 3)
    assert out["target"][:, 0, 0].tolist() == [2.0, 1.0]


def test_a_bare_string_is_one_channel_name():
    """The reference iterated a string character by character."""
    out = StackChannelsd({"source": "Phase"})(_sample())
    assert torch.equal(out["source"], torch.zeros(1, 2, 3))
    assert "Nuclei" in out


def test_missing_channel_lists_the_entries_present():
    with pytest.raises(KeyError, match=r"\['GFP'\].*Membrane"):
        StackChannelsd({"source": ["Phase", "GFP"]})(_sample())


@pytest.mark.parametrize("channel_map", [{}, {"source": []}, {"source": [1]}, ["Phase"]])
def test_invalid_channel_map_is_rejected(channel_map):
    with pytest.raises(ValueError, match="channel_map"):
        StackChannelsd(channel_map)
