import pytest
import torch

from viscy_transforms import NormalizeSampled


def _meta(**levels):
    return {"Phase": levels}


@pytest.mark.parametrize("level", ["fov_statistics", "dataset_statistics", "timepoint_statistics"])
def test_every_level_normalizes_with_its_own_statistics(level):
    stats = {"mean": torch.tensor(2.0), "std": torch.tensor(4.0)}
    other = {"mean": torch.tensor(100.0), "std": torch.tensor(1.0)}
    levels = {name: other for name in ("fov_statistics", "dataset_statistics", "timepoint_statistics")}
    sample = {"Phase": torch.tensor([[2.0, 6.0, -2.0]]), "norm_meta": _meta(**{**levels, level: stats})}
    out = NormalizeSampled(keys="Phase", level=level)(sample)
    torch.testing.assert_close(out["Phase"], torch.tensor([[0.0, 1.0, -1.0]]))


def test_formula_keeps_the_reference_epsilon():
    sample = {"Phase": torch.tensor([1.0]), "norm_meta": _meta(fov_statistics={"mean": 0.0, "std": torch.tensor(0.0)})}
    out = NormalizeSampled(keys="Phase", level="fov_statistics")(sample)
    assert float(out["Phase"]) == pytest.approx(1e8)


def test_per_sample_statistics_broadcast_over_a_batch(device):
    data = torch.ones(3, 1, 2, 2, 2, device=device)
    meta = _meta(timepoint_statistics={"median": torch.tensor([0.0, 1.0, 3.0]), "iqr": torch.tensor([1.0, 2.0, 4.0])})
    out = NormalizeSampled(keys="Phase", level="timepoint_statistics", subtrahend="median", divisor="iqr")(
        {"Phase": data, "norm_meta": meta}
    )["Phase"]
    assert out.device == data.device
    assert out.flatten(1)[:, 0].tolist() == pytest.approx([1.0, 0.0, -0.5])
    assert torch.equal(out, out[:, :, :1, :1, :1].expand_as(out))


def test_statistics_take_the_data_dtype():
    sample = {
        "Phase": torch.ones(2, dtype=torch.float64),
        "norm_meta": _meta(fov_statistics={"mean": torch.tensor(0.5), "std": torch.tensor(0.25)}),
    }
    out = NormalizeSampled(keys="Phase", level="fov_statistics")(sample)["Phase"]
    assert out.dtype == torch.float64


def test_several_channels_and_remove_meta():
    meta = {
        "Phase": {"dataset_statistics": {"mean": torch.tensor(1.0), "std": torch.tensor(1.0)}},
        "GFP": {"dataset_statistics": {"mean": torch.tensor(10.0), "std": torch.tensor(5.0)}},
    }
    sample = {"index": 3, "Phase": torch.tensor([2.0]), "GFP": torch.tensor([20.0]), "norm_meta": meta}
    out = NormalizeSampled(keys=["Phase", "GFP"], level="dataset_statistics", remove_meta=True)(sample)
    assert "norm_meta" not in out
    assert "norm_meta" in sample
    assert out["Phase"].item() == pytest.approx(1.0)
    assert out["GFP"].item() == pytest.approx(2.0)
    assert out["index"] == 3
    assert sample["Phase"].item() == 2.0


def test_invalid_level_lists_the_choices():
    with pytest.raises(ValueError, match="timepoint_statistics"):
        NormalizeSampled(keys="Phase", level="plate_statistics")


def test_missing_metadata_errors_name_what_is_present():
    stats = {"mean": torch.tensor(0.0), "std": torch.tensor(1.0)}
    normalize = NormalizeSampled(keys="Phase", level="fov_statistics", divisor="iqr")
    with pytest.raises(KeyError, match=r"needs sample\['norm_meta'\]"):
        normalize({"Phase": torch.ones(1)})
    with pytest.raises(KeyError, match=r"channels present: \['GFP'\]"):
        normalize({"Phase": torch.ones(1), "norm_meta": {"GFP": {"fov_statistics": stats}}})
    with pytest.raises(KeyError, match=r"levels present: \['dataset_statistics'\]"):
        normalize({"Phase": torch.ones(1), "norm_meta": _meta(dataset_statistics=stats)})
    with pytest.raises(KeyError, match=r"statistics present: \['mean', 'std'\]"):
        normalize({"Phase": torch.ones(1), "norm_meta": _meta(fov_statistics=stats)})
    with pytest.raises(KeyError, match="keys present"):
        normalize({"GFP": torch.ones(1), "norm_meta": _meta(fov_statistics=stats)})


def test_statistics_of_the_wrong_shape_are_rejected():
    meta = _meta(fov_statistics={"mean": torch.zeros(3), "std": torch.ones(2)})
    with pytest.raises(ValueError, match=r"shape \(\) or \(2,\)"):
        NormalizeSampled(keys="Phase", level="fov_statistics")({"Phase": torch.ones(2, 1, 4), "norm_meta": meta})
