"""Exactness of the sample-and-bracket ``batched_quantiles`` against sorting, kthvalue, torch and numpy."""

import math
import warnings

import numpy as np
import pytest
import torch

import viscy_transforms._percentile as percentile
from viscy_transforms import BatchedScaleIntensityRangePercentiles, BatchedScaleIntensityRangePercentilesd
from viscy_transforms._percentile import _sample_indices, batched_quantile, batched_quantiles

QS = [0.0, 0.01, 0.123456, 0.5, 0.99, 0.999, 1.0]
# Above percentile._DIRECT (65536), so these rows take the sample-and-bracket path; 100 * 700 + 1
# makes q * (N - 1) an integer for q in {0, 0.01, 0.5, 0.99, 1}: those quantiles are order statistics.
LONG = 70_001


def kthvalue_quantile(values: torch.Tensor, q: float) -> torch.Tensor:
    """The implementation batched_quantile replaced: two kthvalue calls, same interpolation."""
    position = q * (values.shape[-1] - 1)
    below = int(np.floor(position))
    above = min(below + 1, values.shape[-1] - 1)
    low = values.kthvalue(below + 1, dim=-1).values
    weight = position - below
    if weight == 0:
        return low
    high = values.kthvalue(above + 1, dim=-1).values
    return low + weight * (high - low)


def sorted_quantile(values: torch.Tensor, q: float) -> torch.Tensor:
    """The same quantile from fully sorted rows (NaN sorts last, as kthvalue orders it)."""
    n = values.shape[-1]
    position = q * (n - 1)
    below = math.floor(position)
    weight = position - below
    ordered = values.sort(dim=-1).values
    low = ordered[..., below]
    if weight == 0:
        return low
    high = ordered[..., min(below + 1, n - 1)]
    return low + weight * (high - low)


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _rows(kind: str, shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """float64 rows of a distribution; cast by the caller (every value here is exact in float16)."""
    g = _generator(seed)
    if kind == "normal":
        return torch.randn(shape, generator=g, dtype=torch.float64)
    if kind == "constant":
        return torch.full(shape, 2.5, dtype=torch.float64)
    if kind == "cauchy":
        return torch.empty(shape, dtype=torch.float64).cauchy_(generator=g)
    if kind == "lognormal":
        return torch.empty(shape, dtype=torch.float64).log_normal_(0.0, 2.0, generator=g)
    if kind == "few_integers":  # many ties, every value a tie
        return torch.randint(0, 7, shape, generator=g).double()
    if kind == "camera":  # integer counts around a background level, like uint16 images
        return (torch.randn(shape, generator=g, dtype=torch.float64) * 12 + 100).round().clamp(min=0)
    if kind == "mostly_zero":  # 99% one value: ranks 0.99 sits at the edge of the tie
        values = torch.zeros(shape, dtype=torch.float64)
        n = shape[-1]
        values[..., : n // 100 + 1] = torch.randn(*shape[:-1], n // 100 + 1, generator=g, dtype=torch.float64).abs()
        return values[..., torch.randperm(n, generator=g)]
    if kind == "infinite":
        values = torch.randn(shape, generator=g, dtype=torch.float64)
        values[..., ::97] = math.inf
        values[..., 5::89] = -math.inf
        return values
    raise ValueError(kind)


KINDS = ["normal", "constant", "cauchy", "lognormal", "few_integers", "camera", "mostly_zero", "infinite"]


@pytest.mark.parametrize("kind", KINDS)
def test_quantiles_equal_sorting_and_kthvalue_exactly(kind, device):
    values = _rows(kind, (3, LONG)).float().to(device)
    found = batched_quantiles(values, QS)
    for q, quantile in zip(QS, found, strict=True):
        assert torch.equal(quantile, sorted_quantile(values, q)), q
        assert torch.equal(quantile, kthvalue_quantile(values, q)), q


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("kind", ["normal", "camera", "mostly_zero"])
def test_every_float_dtype_is_exact_and_kept(kind, dtype, device):
    values = _rows(kind, (2, LONG), seed=1).to(device=device, dtype=dtype)
    for q, quantile in zip(QS, batched_quantiles(values, QS), strict=True):
        assert quantile.dtype == dtype
        assert torch.equal(quantile, sorted_quantile(values, q)), q
        if not values.is_cuda:
            assert torch.equal(quantile, kthvalue_quantile(values, q)), q


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int16, torch.int32, torch.int64])
def test_integer_inputs_behave_as_before(dtype):
    values = torch.randint(0, 200, (2, LONG), generator=_generator(2)).to(dtype)
    for q in QS:
        found, expected = batched_quantile(values, q), kthvalue_quantile(values, q)
        assert found.dtype == expected.dtype
        assert torch.equal(found, expected), q


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_order_statistics_equal_torch_quantile_and_numpy_exactly(dtype):
    """Where q * (N - 1) is an integer the quantile is an order statistic: bit-equal to both.

    The references run in float64: on float32 input torch.quantile rounds q itself to float32
    (0.99 becomes 0.99000001), which moves its result off the order statistic. Elsewhere
    torch.quantile interpolates with ``lerp`` (``b - (b - a) * (1 - w)`` for w >= 0.5) and numpy
    with its own two-sided lerp, while batched_quantile keeps the arithmetic it always had
    (``a + w * (b - a)``, in the input dtype); these differ by a rounding of the result, so they
    are compared to within a few float32 ulps of the values' scale (|values| <= 1000).
    """
    values = _rows("cauchy", (4, LONG), seed=3).clamp(-1e3, 1e3).to(dtype)
    for q in QS:
        found = batched_quantile(values, q).double()
        reference = torch.quantile(values.double(), q, dim=-1)
        numpy_reference = torch.from_numpy(np.quantile(values.double().numpy(), q, axis=-1))
        if float(q * (LONG - 1)).is_integer():
            assert torch.equal(found, reference), q
            assert torch.equal(found, numpy_reference), q
        else:
            torch.testing.assert_close(found, reference, rtol=0, atol=1e-4)
            torch.testing.assert_close(found, numpy_reference, rtol=0, atol=1e-4)


@pytest.mark.parametrize("length", [1, 2, 7, 100, 65_536, 65_537])
def test_short_and_boundary_lengths(length):
    values = _rows("normal", (3, length), seed=4).float()
    for q, quantile in zip(QS, batched_quantiles(values, QS), strict=True):
        assert torch.equal(quantile, kthvalue_quantile(values, q)), (length, q)


def test_nan_is_ordered_above_infinity_as_before():
    values = _rows("normal", (3, LONG), seed=5).float()
    values[0, ::3] = math.nan  # a third NaN: quantiles above 2/3 are NaN
    values[1, 7] = math.nan  # one NaN: only the maximum is NaN
    values[2] = math.nan
    for q, quantile in zip(QS, batched_quantiles(values, QS), strict=True):
        expected = kthvalue_quantile(values, q)
        torch.testing.assert_close(quantile, expected, rtol=0, atol=0, equal_nan=True)
    assert not torch.isnan(batched_quantile(values, 0.6)[0])
    assert torch.isnan(batched_quantile(values, 0.7)[0])
    assert torch.isnan(batched_quantile(values, 1.0)[1])
    assert not torch.isnan(batched_quantile(values, 0.999)[1])


def test_a_bracket_the_sample_misses_falls_back_to_kthvalue(monkeypatch):
    """The sample sees only zeros; the ranks are among the ones: the counts catch it, kthvalue answers."""
    n = LONG
    index = _sample_indices(torch.tensor([n]), min(percentile._SAMPLE, n // 8))[0]
    values = torch.ones(2, n)
    values[:, index] = 0.0
    values[1] = torch.arange(n, dtype=torch.float32)  # an ordinary row, bracketed normally
    calls = []
    exact = percentile._exact
    monkeypatch.setattr(percentile, "_exact", lambda *args: calls.append(args[0]) or exact(*args))
    for q, quantile in zip(QS, batched_quantiles(values, QS), strict=True):
        assert torch.equal(quantile, kthvalue_quantile(values, q)), q
    fallen_back = torch.cat(calls)
    assert len(fallen_back) > 0, "the fooled row takes the fallback"
    assert (fallen_back == values[0]).all(), "only the fooled row takes the fallback"


@pytest.fixture(params=[8, 1], ids=["rounds", "one_round"])
def tiny_constants(request, monkeypatch):
    """Bracket rows of a few thousand values, with small samples: many rounds, misses and stalls.

    With one round allowed, the first compaction is sorted at once.
    """
    monkeypatch.setattr(percentile, "_DIRECT", 64)
    monkeypatch.setattr(percentile, "_SAMPLE", 64)
    monkeypatch.setattr(percentile, "_FINAL", 16)
    monkeypatch.setattr(percentile, "_SIGMAS", 1.0)
    monkeypatch.setattr(percentile, "_MAX_ROUNDS", request.param)


@pytest.mark.parametrize("kind", KINDS)
def test_every_round_is_exact_with_tiny_samples(tiny_constants, kind):
    values = _rows(kind, (6, 3001), seed=6)
    for dtype in (torch.float32, torch.float64):
        cast = values.to(dtype)
        qs = [0.0, 0.001, 0.25, 0.5, 0.7, 0.99, 1.0]
        for q, quantile in zip(qs, batched_quantiles(cast, qs), strict=True):
            assert torch.equal(quantile, sorted_quantile(cast, q)), (kind, dtype, q)


def test_nonzero_with_known_sizes_matches_nonzero(device):
    """``_nonzero`` takes ``nonzero_static`` on CUDA; both give the same (row, column) list."""
    mask = (torch.rand(5, 300, generator=_generator(11)) < 0.2).to(device)
    totals = mask.sum(-1).cpu().numpy()
    assert torch.equal(torch.nonzero_static(mask, size=int(totals.sum())), mask.nonzero())
    assert torch.equal(percentile._nonzero(mask, totals), mask.nonzero())
    assert torch.equal(percentile._nonzero(mask, totals, static=True), mask.nonzero())
    assert torch.equal(percentile._nonzero(mask, totals, static=True, limit=700), mask.nonzero())  # 2 rows a block


@pytest.mark.parametrize("width", [1, 127, 128, 129, 1000, 70_001])
def test_count_reads_runs_of_bytes_without_overflow(width):
    mask = torch.rand(3, 2, width, generator=_generator(12)) < 0.9
    assert torch.equal(percentile._count(mask), mask.sum(-1))
    full = torch.ones(2, width, dtype=torch.bool)
    assert torch.equal(percentile._count(full), torch.full((2,), width))


def test_equal_and_neighbouring_quantiles_share_one_call():
    values = _rows("camera", (3, LONG), seed=7).float()
    found = batched_quantiles(values, (0.5, 0.5, 0.5 + 1 / (LONG - 1), 0.99))
    assert torch.equal(found[0], found[1])
    for q, quantile in zip((0.5, 0.5 + 1 / (LONG - 1), 0.99), found[1:], strict=True):
        assert torch.equal(quantile, kthvalue_quantile(values, q))


def test_shapes_per_sample_and_per_channel():
    batch = _rows("lognormal", (2, 3, 5, 120, 120), seed=8).float()  # 72000 values per channel
    per_sample = batch.reshape(2, -1)
    per_channel = batch.reshape(2, 3, -1)
    assert batched_quantiles(per_sample, (0.5, 0.99)).shape == (2, 2)
    assert batched_quantiles(per_channel, (0.5, 0.99)).shape == (2, 2, 3)
    assert batched_quantile(per_sample[0], 0.5).shape == ()
    for q in (0.5, 0.99):
        assert torch.equal(batched_quantile(per_sample, q), kthvalue_quantile(per_sample, q))
        assert torch.equal(batched_quantile(per_channel, q), kthvalue_quantile(per_channel, q))


def test_the_global_random_state_is_untouched(device):
    values = _rows("normal", (2, LONG), seed=9).float().to(device)
    cpu_state = torch.get_rng_state()
    cuda_state = torch.cuda.get_rng_state() if values.is_cuda else None
    batched_quantiles(values, (0.5, 0.99))
    assert torch.equal(torch.get_rng_state(), cpu_state)
    if cuda_state is not None:
        assert torch.equal(torch.cuda.get_rng_state(), cuda_state)


def test_invalid_quantiles_and_empty_rows_are_rejected():
    with pytest.raises(ValueError, match=r"quantiles must be in \[0, 1\], got 1.5"):
        batched_quantile(torch.zeros(2, 10), 1.5)
    with pytest.raises(ValueError, match="needs values along the last dim"):
        batched_quantiles(torch.zeros(2, 0), (0.5,))


def _kthvalue_quantiles(values: torch.Tensor, qs) -> torch.Tensor:
    return torch.stack([kthvalue_quantile(values, q) for q in qs])


@pytest.mark.parametrize(
    "config",
    [
        {"lower": 50, "upper": 99, "b_min": 0.0, "b_max": 1.0},
        {"lower": 1, "upper": 99, "b_min": -1.0, "b_max": 1.0, "clip": True},
        {"lower": 10, "upper": 90, "b_min": 0.0, "b_max": 1.0, "relative": True},
        {"lower": 50, "upper": 99, "b_min": 0.0, "b_max": 1.0, "channel_wise": True},
        {"lower": 30, "upper": 30, "b_min": 0.0, "b_max": 1.0},
    ],
)
@pytest.mark.parametrize("kind", ["normal", "camera"])
def test_transform_outputs_are_unchanged_from_the_kthvalue_implementation(monkeypatch, config, kind):
    batch = _rows(kind, (3, 2, 4, 130, 130), seed=10).float()  # 135200 values per sample, 67600 per channel
    if kind == "camera":
        batch[0] = 100.0  # a constant sample: shifted, not scaled
    transform = BatchedScaleIntensityRangePercentiles(**config)
    dictionary = BatchedScaleIntensityRangePercentilesd(keys="x", **config)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant samples; the warning is tested in test_percentile.py
        found = transform(batch)
        found_dictionary = dictionary({"x": batch})["x"]
        monkeypatch.setattr(percentile, "batched_quantiles", _kthvalue_quantiles)
        expected = transform(batch)
    assert torch.equal(found, expected)
    assert torch.equal(found_dictionary, expected)
