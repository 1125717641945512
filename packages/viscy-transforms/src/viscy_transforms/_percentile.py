"""Per-sample percentile intensity scaling of batches."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import torch
from monai.transforms import ScaleIntensityRangePercentiles
from numpy.typing import DTypeLike
from torch import Tensor

from viscy_transforms._mapping import ArrayMapTransform, Keys
from viscy_transforms._random import check_kept_dtype
from viscy_transforms.kinds import TransformKind

__all__ = ["BatchedScaleIntensityRangePercentiles", "BatchedScaleIntensityRangePercentilesd"]

# Selection by sample and bracket (see ``_order_statistics``). Rows of at most ``_DIRECT`` values
# go straight to ``kthvalue``; longer rows are bracketed from a sorted sample of at most
# ``_SAMPLE`` values (an eighth of the row at most), with ``_SIGMAS`` binomial standard deviations
# (plus ``_SIGMAS`` positions) of margin on each side; a compacted bracket of at most ``_FINAL``
# values is sorted. Tests lower these to exercise every round on small rows.
_DIRECT = 65536
_SAMPLE = 16384
_FINAL = 8192
_SIGMAS = 5.0
_MAX_ROUNDS = 8


def batched_quantile(values: Tensor, q: float) -> Tensor:
    """Quantile along the last dim with linear interpolation (``torch.quantile``'s default).

    Exact, with no limit on the input size (``torch.quantile`` refuses inputs above 2**24
    elements); see :func:`batched_quantiles`, which this calls with one quantile.

    Parameters
    ----------
    values : Tensor
        Shape (..., N).
    q : float
        Quantile in [0, 1].

    Returns
    -------
    Tensor
        Shape (...).
    """
    return batched_quantiles(values, (q,))[0]


def batched_quantiles(values: Tensor, qs: Sequence[float]) -> Tensor:
    """Several quantiles along the last dim with linear interpolation, sharing one selection.

    For each q, with ``position = q * (N - 1)``, the result is the order statistic at
    ``floor(position)`` plus ``weight * (next - it)``, where ``weight = position - floor(position)``
    and ``next`` is the order statistic above (only computed when ``weight > 0``). The order
    statistics are exact (equal to ``values.sort(-1).values[..., k]``), computed without sorting
    the rows (see ``_order_statistics``); the interpolation is the arithmetic this function has
    always used, which can differ from ``torch.quantile``'s ``lerp`` by a rounding.

    NaN is ordered above +inf, as ``sort`` and ``kthvalue`` order it: a quantile that needs an
    order statistic among a row's NaNs is NaN, and a row's NaNs otherwise only take the top
    ranks (``torch.quantile`` and ``numpy.percentile`` return NaN for any row holding a NaN).
    Draws no random numbers.

    Parameters
    ----------
    values : Tensor
        Shape (..., N), N >= 1; floating point or integer.
    qs : Sequence[float]
        Quantiles, each in [0, 1].

    Returns
    -------
    Tensor
        Shape (len(qs), ...): ``batched_quantile(values, q)`` for each q; the dtype of
        ``values`` (an integer input gives a float where it interpolates, as before).

    Raises
    ------
    ValueError
        If ``values`` has no values along the last dim or a q is outside [0, 1].
    """
    n = values.shape[-1] if values.ndim else 0
    if n == 0:
        raise ValueError(f"batched_quantiles needs values along the last dim, got shape {tuple(values.shape)}")
    for q in qs:
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantiles must be in [0, 1], got {q!r}")
    positions = [q * (n - 1) for q in qs]
    belows = [math.floor(position) for position in positions]
    weights = [position - below for position, below in zip(positions, belows, strict=True)]
    aboves = [min(below + 1, n - 1) for below in belows]
    ranks = sorted(set(belows) | {above for above, weight in zip(aboves, weights, strict=True) if weight != 0})
    stats = _order_statistics(values, ranks)
    column = {rank: index for index, rank in enumerate(ranks)}
    results = []
    for below, above, weight in zip(belows, aboves, weights, strict=True):
        low = stats[..., column[below]]
        if weight == 0:
            results.append(low)
            continue
        high = stats[..., column[above]]
        results.append(low + weight * (high - low))
    return torch.stack(results)


def _order_statistics(values: Tensor, ranks: Sequence[int]) -> Tensor:
    """Select the ``ranks``-th smallest values (0-based, NaN above +inf) along the last dim, exactly.

    Rows up to ``_DIRECT`` values (and 64-bit integer or bool inputs) use ``kthvalue``. Longer
    rows are selected by sample and bracket, all rows at once:

    1. Sort a deterministic stratified sample of each row; for each pair of neighbouring ranks
       (the floor and ceil of one quantile), take two sample order statistics ``lo <= hi`` that
       bracket the ranks with a margin of ``_SIGMAS`` binomial standard deviations.
    2. Count, per row, the values below ``lo`` and up to ``hi`` (two comparison passes). A rank
       ``k`` in ``[#(v < lo), #(v <= hi))`` is the ``(k - #(v < lo))``-th smallest value in
       ``[lo, hi]``; when ``lo == hi`` it is ``lo``.
    3. Compact the values in the bracket into a NaN-padded (rows, width) tensor, about
       ``2 * _SIGMAS / sqrt(_SAMPLE)`` of the row, and repeat on it. Later rounds count strictly
       and non-strictly at both ends, so a rank inside the ties of ``lo`` or ``hi`` is resolved
       at once and only values strictly inside ``(lo, hi)`` are kept: many ties cannot stall it.
       A bracket of at most ``_FINAL`` values is sorted.

    The counts are exact, so a result never depends on the sample: a bracket that misses its
    rank (an unlucky or adversarial sample) sends that row to ``kthvalue`` (first round) or to a
    sort of its compacted values, and a round that does not halve the width ends in a sort.
    Each round makes one host sync (to size the compaction); nothing loops over rows.

    Parameters
    ----------
    values : Tensor
        Shape (..., N).
    ranks : Sequence[int]
        Sorted, distinct ranks in [0, N).

    Returns
    -------
    Tensor
        Shape (..., len(ranks)), the dtype of ``values``.
    """
    n = values.shape[-1]
    rows = values.reshape(-1, n)
    work_dtype = _work_dtype(values.dtype)
    if n <= _DIRECT or work_dtype is None or rows.shape[0] == 0:
        stats = torch.stack([rows.kthvalue(rank + 1, dim=-1).values for rank in ranks], dim=-1)
        return stats.reshape(*values.shape[:-1], len(ranks))
    groups, location = _pair_ranks(ranks, n)
    selected = _select(rows.to(work_dtype), groups).to(values.dtype)
    stats = torch.stack([selected[group, :, side] for group, side in location], dim=-1)
    return stats.reshape(*values.shape[:-1], len(ranks))


def _work_dtype(dtype: torch.dtype) -> torch.dtype | None:
    """Dtype that holds every value of ``dtype`` exactly for the comparisons; None: use kthvalue."""
    if dtype.is_floating_point:
        return dtype
    if dtype in (torch.uint8, torch.int8, torch.int16, torch.uint16):
        return torch.float32
    if dtype in (torch.int32, torch.uint32):
        return torch.float64
    return None


def _pair_ranks(ranks: Sequence[int], n: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Pair neighbouring ranks into groups that share a bracket; (groups, (group, side) of each rank)."""
    close = max(1, n // _SAMPLE)
    groups: list[tuple[int, int]] = []
    location: list[tuple[int, int]] = []
    index = 0
    while index < len(ranks):
        if index + 1 < len(ranks) and ranks[index + 1] - ranks[index] <= close:
            groups.append((ranks[index], ranks[index + 1]))
            location += [(len(groups) - 1, 0), (len(groups) - 1, 1)]
            index += 2
        else:
            groups.append((ranks[index], ranks[index]))
            location.append((len(groups) - 1, 0))
            index += 1
    return groups, location


def _sample_indices(lengths: Tensor, m: int) -> Tensor:
    """One index in each of ``m`` equal strata of ``[0, length)`` per row, at fixed offsets.

    The offset in stratum ``j`` is ``frac(j / golden ratio)`` of the stratum (a low-discrepancy
    sequence), so no random numbers are drawn and a pattern repeating at the stratum width is not
    sampled at one phase only.

    Parameters
    ----------
    lengths : Tensor
        Shape (rows,), int64, each >= 1.
    m : int
        Indices per row, at most 65536.

    Returns
    -------
    Tensor
        Shape (rows, m), int64, non-decreasing in each row, each below its row's length.
    """
    j = torch.arange(m, dtype=torch.int64, device=lengths.device)
    offset = (j * 40503) % 65536  # 40503 / 65536 ~ 1 / golden ratio: distinct offsets
    length = lengths[:, None]
    return (j * length) // m + ((offset * length) // 65536) // m


def _brackets(data: Tensor, lengths: Tensor, ranks: Tensor) -> tuple[Tensor, Tensor]:
    """Per (group, row), sample order statistics ``lo <= hi`` bracketing ``ranks`` w.h.p.

    Parameters
    ----------
    data : Tensor
        Shape (rows, width), the first ``lengths`` values of each row valid.
    lengths : Tensor
        Shape (rows,) or (1,) when every row is full, int64.
    ranks : Tensor
        Shape (groups, rows, 2), int64: the lowest and highest rank of each group.

    Returns
    -------
    tuple[Tensor, Tensor]
        ``lo`` and ``hi``, shape (groups, rows), ``-inf``/``inf`` where the margin leaves the sample.
    """
    m = max(1, min(_SAMPLE, data.shape[-1] // 8))
    index = _sample_indices(lengths, m).expand(data.shape[0], -1)
    sample = data.gather(-1, index).sort(dim=-1).values
    count = lengths.to(torch.float32)
    below_fraction = ((ranks[..., 0] + 1) / count).clamp(0.0, 1.0)
    above_fraction = (ranks[..., 1] / count).clamp(0.0, 1.0)
    below_margin = _SIGMAS * (m * below_fraction * (1 - below_fraction)).sqrt() + _SIGMAS
    above_margin = _SIGMAS * (m * above_fraction * (1 - above_fraction)).sqrt() + _SIGMAS
    low_index = (m * below_fraction - below_margin).floor().long() - 1
    high_index = (m * above_fraction + above_margin).ceil().long()
    sample = sample.expand(ranks.shape[0], -1, -1)
    lo = sample.gather(-1, low_index.clamp(0, m - 1)[..., None])[..., 0]
    hi = sample.gather(-1, high_index.clamp(0, m - 1)[..., None])[..., 0]
    lo = torch.where(low_index < 0, torch.full_like(lo, -math.inf), lo)
    hi = torch.where(high_index > m - 1, torch.full_like(hi, math.inf), hi)
    return lo, hi


def _count(mask: Tensor) -> Tensor:
    """Count the True values along the last dim, as int64, reading each byte once.

    ``mask.sum(-1)`` first copies the mask to int64 (8 bytes written and read per value); here
    runs of 128 bytes are summed in uint8 (at most 128: no overflow, no copy) and only those
    sums are widened.
    """
    width = mask.shape[-1]
    as_bytes = mask.view(torch.uint8)
    full = width - width % 128
    runs = as_bytes[..., :full].reshape(*mask.shape[:-1], full // 128, 128)
    count = runs.sum(-1, dtype=torch.uint8).sum(-1)
    if full < width:
        count = count + as_bytes[..., full:].sum(-1)
    return count


def _nonzero(mask: Tensor, totals: np.ndarray, static: bool | None = None, limit: int = 2**31 - 1) -> Tensor:
    """``mask.nonzero()`` of a 2-D mask whose row counts, ``totals``, are known.

    With ``static`` (default: on CUDA), ``nonzero_static`` needs no host sync for its size, run
    on blocks of rows of at most ``limit`` values (32-bit indexing).
    """
    if not (mask.is_cuda if static is None else static):
        return mask.nonzero()
    block = max(1, limit // max(1, mask.shape[-1]))
    found = []
    for start in range(0, mask.shape[0], block):
        part = torch.nonzero_static(mask[start : start + block], size=int(totals[start : start + block].sum()))
        part[:, 0] += start
        found.append(part)
    return found[0] if len(found) == 1 else torch.cat(found)


def _select(rows: Tensor, groups: Sequence[tuple[int, int]]) -> Tensor:
    """Order statistics of ``rows`` (R, N) at each group's two ranks; shape (groups, R, 2).

    See ``_order_statistics`` for the algorithm. Each round works on ``data`` (R', width) whose
    rows hold ``lengths`` valid values (then NaN), with ``ranks`` (groups', R', 2) and ``dest``
    (groups', R', 2), the flat index in ``out`` of each wanted value (the last slot of ``out``
    takes values that are not wanted). A (group, row) pair is the unit of work: the first round
    has every group of every input row; a compacted row is one pair.
    """
    num_rows, n = rows.shape
    device = rows.device
    out = torch.empty(len(groups) * num_rows * 2 + 1, dtype=rows.dtype, device=device)
    scratch = out.numel() - 1
    data = rows.contiguous()
    lengths = torch.full((1,), n, dtype=torch.int64, device=device)
    ranks = torch.tensor(groups, dtype=torch.int64, device=device)[:, None, :].expand(-1, num_rows, -1)
    dest = torch.arange(scratch, device=device).view(len(groups), num_rows, 2)
    stalled = False
    for round_index in range(_MAX_ROUNDS + 1):
        first = round_index == 0
        num_pairs, width = ranks.shape[0] * ranks.shape[1], data.shape[-1]
        if not first and (width <= _FINAL or stalled or round_index == _MAX_ROUNDS):
            out[dest] = data.sort(dim=-1).values.expand(ranks.shape[0], -1, -1).gather(-1, ranks)
            break
        lo, hi = _brackets(data, lengths, ranks)
        lo_, hi_ = lo[..., None], hi[..., None]
        if first:
            # Closed bracket [lo, hi]: two passes over the whole input.
            lower, upper = data < lo_, data <= hi_
            below_lo = at_most_lo = _count(lower)[..., None]
            below_hi = at_most_hi = _count(upper)[..., None]
        else:
            # Open bracket (lo, hi), with lo and hi as cells of their own: ties cannot stall it.
            lower, upper = data <= lo_, data < hi_
            below_lo, at_most_lo = _count(data < lo_)[..., None], _count(lower)[..., None]
            below_hi, at_most_hi = _count(upper)[..., None], _count(data <= hi_)[..., None]
        same = (lo == hi)[..., None]  # then every value of the bracket is lo
        missed = (ranks < below_lo) | (ranks >= at_most_hi)
        inside = (ranks >= at_most_lo) & (ranks < below_hi) & ~same
        at_lo = (ranks < at_most_lo) | same
        out[dest] = torch.where(missed | inside, out[dest], torch.where(at_lo, lo_, hi_))
        failed = missed.any(-1)
        sizes = below_hi - at_most_lo  # values inside the bracket
        compact = inside.any(-1) & ~failed
        host = torch.stack([failed.long(), compact.long(), sizes[..., 0]]).cpu().numpy().reshape(3, num_pairs)
        pair_ranks, pair_dest = ranks.reshape(num_pairs, 2), dest.reshape(num_pairs, 2)
        if host[0].any():
            pairs = torch.as_tensor(np.flatnonzero(host[0]), device=device)
            out[pair_dest[pairs]] = _exact(data[pairs % data.shape[0]], pair_ranks[pairs], first)
        if not host[1].any():
            break
        compact = np.flatnonzero(host[1])
        pairs = torch.as_tensor(compact, device=device)
        keep = (upper > lower).view(num_pairs, width)
        del lower, upper
        sizes = sizes.view(num_pairs)[pairs]
        compacted = _compact(data, keep, pairs, sizes, host[2][compact])
        stalled = not first and compacted.shape[-1] > width // 2
        wanted = inside.view(num_pairs, 2)[pairs]
        shifted = pair_ranks[pairs] - at_most_lo.view(num_pairs, 1)[pairs]
        # A rank resolved already follows the other one of its pair, and is written to scratch.
        ranks = torch.where(wanted, shifted, shifted.flip(-1))[None]
        dest = torch.where(wanted, pair_dest[pairs], scratch)[None]
        data, lengths = compacted, sizes
    return out[:scratch].view(len(groups), num_rows, 2)


def _compact(data: Tensor, keep: Tensor, pairs: Tensor, sizes: Tensor, sizes_host: np.ndarray) -> Tensor:
    """Gather the kept values of each pair into a NaN-padded (pairs, widest) tensor.

    Parameters
    ----------
    data : Tensor
        Shape (R', width), contiguous; pair ``p`` reads row ``p % R'``.
    keep : Tensor
        Shape (pairs', width), bool: the values of each pair to keep.
    pairs : Tensor
        Shape (P,), int64, increasing: the pairs to compact.
    sizes : Tensor
        Shape (P,), int64: how many values each of those pairs keeps (its True count in ``keep``).
    sizes_host : np.ndarray
        ``sizes`` on the host (sizing the output needs no further sync).

    Returns
    -------
    Tensor
        Shape (P, max(sizes)), each row's kept values (in their order) first, then NaN.
    """
    total, width = int(sizes_host.sum()), int(sizes_host.max())
    if pairs.numel() < keep.shape[0]:
        keep = keep[pairs]
    pair, column = _nonzero(keep, sizes_host).unbind(1)
    num_rows, data_width = data.shape
    source = ((pairs % num_rows) * data_width)[pair] + column
    starts = sizes.cumsum(0) - sizes
    target = (torch.arange(pairs.numel(), device=data.device) * width - starts)[pair] + torch.arange(
        total, device=data.device
    )
    compacted = torch.full((pairs.numel(), width), math.nan, dtype=data.dtype, device=data.device)
    compacted.view(-1).index_copy_(0, target, data.view(-1).index_select(0, source))
    return compacted


def _exact(rows: Tensor, ranks: Tensor, first: bool) -> Tensor:
    """Exact order statistics of ``rows`` (P, width) at ``ranks`` (P, 2), for rows whose bracket missed.

    In the first round every row holds the whole input and its group's ranks: ``kthvalue`` on
    the rows of each distinct rank pair. Later rows are NaN-padded compactions: a sort.
    """
    if not first:
        return rows.sort(dim=-1).values.gather(-1, ranks)
    found = torch.empty(ranks.shape, dtype=rows.dtype, device=rows.device)
    for pair in torch.unique(ranks, dim=0).tolist():
        chosen = (ranks == torch.tensor(pair, device=ranks.device)).all(-1)
        for side, rank in enumerate(pair):
            found[chosen, side] = rows[chosen].kthvalue(rank + 1, dim=-1).values
    return found


class BatchedScaleIntensityRangePercentiles(ScaleIntensityRangePercentiles):
    """MONAI ``ScaleIntensityRangePercentiles`` applied to every sample of a batch independently.

    For each sample (or each sample and channel with ``channel_wise``), the ``lower`` and
    ``upper`` percentiles of its values are mapped to ``b_min`` and ``b_max``, with MONAI's
    ``relative`` and ``clip`` semantics. A sample (or channel) whose two percentiles are equal
    cannot be scaled: it is only shifted, ``x - a_min`` (``+ b_min`` when given), as MONAI does,
    and a warning counts such samples; the other samples are scaled normally.

    Works on batches of any shape with the batch first, e.g. (B, C, Y, X) and (B, C, Z, Y, X).

    Parameters
    ----------
    lower, upper : float
        Percentiles in [0, 100].
    b_min, b_max : float | None
        Target range; None leaves the values at the [0, 1] normalization (see MONAI).
    clip : bool
        Clip the output to [b_min, b_max]. Default False.
    relative : bool
        Scale the target range by the percentiles (MONAI's relative mode). Default False.
    channel_wise : bool
        Percentiles per (sample, channel) instead of per sample. Default False.
    dtype : DTypeLike
        Accepted for reference configs; only the default float32 (or None) is accepted:
        floating-point inputs keep their dtype and other inputs become float32 (cast the data
        before this transform to change it).

    Raises
    ------
    ValueError
        If ``relative`` lacks ``b_min`` or ``b_max``, or ``dtype`` is neither float32 nor None.
    """

    transform_kind: ClassVar[TransformKind] = TransformKind.NORMALIZE
    runs_on_batches: ClassVar[bool] = True

    def __init__(
        self,
        lower: float,
        upper: float,
        b_min: float | None,
        b_max: float | None,
        clip: bool = False,
        relative: bool = False,
        channel_wise: bool = False,
        dtype: DTypeLike = np.float32,
    ) -> None:
        check_kept_dtype(dtype, type(self).__name__)
        super().__init__(
            lower, upper, b_min, b_max, clip=clip, relative=relative, channel_wise=channel_wise, dtype=dtype
        )
        if relative and (b_min is None or b_max is None):
            raise ValueError(f"relative=True needs both b_min and b_max, got b_min={b_min!r}, b_max={b_max!r}")

    def __call__(self, img: Tensor) -> Tensor:
        """Scale a batch.

        Parameters
        ----------
        img : Tensor
            Batch with at least 2 dims (batch and values), at least 3 with ``channel_wise``.

        Returns
        -------
        Tensor
            The scaled batch, same shape and device.
        """
        leading = 2 if self.channel_wise else 1
        if img.ndim <= leading:
            raise ValueError(f"{type(self).__name__} needs a batch with more than {leading} dims, got {img.ndim}")
        data = img if img.is_floating_point() else img.float()
        values = data.reshape(*data.shape[:leading], -1)
        compute = values if values.dtype == torch.float64 else values.float()
        a_min, a_max = batched_quantiles(compute, (self.lower / 100.0, self.upper / 100.0))
        b_min, b_max = self.b_min, self.b_max
        if self.relative:
            b_min = (self.b_max - self.b_min) * (self.lower / 100.0) + self.b_min
            b_max = (self.b_max - self.b_min) * (self.upper / 100.0) + self.b_min
        stat_shape = a_min.shape + (1,) * (data.ndim - leading)
        a_min = a_min.reshape(stat_shape).to(data.dtype)
        a_max = a_max.reshape(stat_shape).to(data.dtype)
        value_range = a_max - a_min
        constant = value_range == 0
        shifted = data - a_min
        out = shifted / torch.where(constant, torch.ones_like(value_range), value_range)
        if b_min is not None and b_max is not None:
            out = out * (b_max - b_min) + b_min
        if self.clip and (b_min is not None or b_max is not None):
            out = out.clamp(min=b_min, max=b_max)
        if bool(constant.any()):
            warnings.warn(
                f"{int(constant.sum())} of {constant.numel()} {'channels' if self.channel_wise else 'samples'} have "
                f"equal {self.lower}th and {self.upper}th percentiles; they are shifted by the lower percentile, "
                "not scaled",
                stacklevel=2,
            )
            out = torch.where(constant, shifted if b_min is None else shifted + b_min, out)
        return out


class BatchedScaleIntensityRangePercentilesd(ArrayMapTransform):
    """Dictionary version of :class:`BatchedScaleIntensityRangePercentiles`; each key is scaled on its own values.

    Parameters
    ----------
    keys : str or sequence of str
        Keys of the batched tensors to scale.
    lower, upper : float
        Percentiles in [0, 100].
    b_min, b_max : float | None
        Target range.
    clip : bool
        Clip the output to [b_min, b_max]. Default False.
    relative : bool
        MONAI's relative mode. Default False.
    channel_wise : bool
        Percentiles per (sample, channel). Default False.
    dtype : DTypeLike
        Accepted for reference configs; only the default float32 (or None) is accepted; see
        :class:`BatchedScaleIntensityRangePercentiles`.
    allow_missing_keys : bool
        Skip absent keys instead of raising KeyError. Default False.
    """

    transform_kind: ClassVar[TransformKind] = TransformKind.NORMALIZE
    runs_on_batches: ClassVar[bool] = True

    def __init__(
        self,
        keys: Keys,
        lower: float,
        upper: float,
        b_min: float | None,
        b_max: float | None,
        clip: bool = False,
        relative: bool = False,
        channel_wise: bool = False,
        dtype: DTypeLike = np.float32,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = BatchedScaleIntensityRangePercentiles(
            lower, upper, b_min, b_max, clip=clip, relative=relative, channel_wise=channel_wise, dtype=dtype
        )
