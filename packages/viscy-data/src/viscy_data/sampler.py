"""Composable batch sampler: one experiment per batch, balanced conditions, a focal time window, leaky mixing, DDP.

:class:`FlexibleBatchSampler` is a ``batch_sampler`` for :class:`torch.utils.data.DataLoader`: it yields lists
of integer positions (``iloc``) into a table of anchors. It needs only the columns of the axes it uses
(``experiment``, ``condition``, ``hours_post_infection``), so any DataFrame with them works.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Iterator, Mapping
from numbers import Integral, Real
from typing import Any

import numpy as np
import pandas as pd
from torch.utils.data import Sampler

__all__ = ["FlexibleBatchSampler"]

_logger = logging.getLogger(__name__)

EXPERIMENT_COLUMN = "experiment"
CONDITION_COLUMN = "condition"
HPI_COLUMN = "hours_post_infection"


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_fraction(name: str, value: Any, upper_open: bool = False) -> float:
    valid = isinstance(value, Real) and not isinstance(value, bool) and 0.0 <= value <= 1.0
    if not valid or (upper_open and value == 1.0):
        interval = "[0, 1)" if upper_open else "[0, 1]"
        raise ValueError(f"{name} must be a number in {interval}, got {value!r}")
    return float(value)


def _codes(frame: pd.DataFrame, column: str) -> tuple[np.ndarray, list[Any]]:
    """Integer codes of a column (its sorted distinct values numbered from 0) and those values."""
    codes, uniques = pd.factorize(frame[column], sort=True)
    missing = int(np.count_nonzero(codes < 0))
    if missing:
        raise ValueError(f"valid_anchors column {column!r} has {missing} missing values")
    return codes.astype(np.int64, copy=False), list(uniques)


def _weights_vector(name: str, weights: Mapping[Any, float], valid: list[Any], default: float, what: str) -> np.ndarray:
    """Weights of ``valid`` in order, ``default`` for those absent from ``weights``, normalised to sum to 1."""
    unknown = [key for key in weights if key not in set(valid)]
    if unknown:
        raise ValueError(f"{name} names unknown {what}s {unknown}; the {what}s are {valid}")
    vector = np.array([weights.get(key, default) for key in valid], dtype=np.float64)
    if not np.all(np.isfinite(vector)) or np.any(vector < 0) or vector.sum() <= 0:
        raise ValueError(f"{name} must be finite, non-negative and not all zero, got {dict(weights)}")
    return vector / vector.sum()


def _round_randomly(value: float, rng: np.random.Generator) -> int:
    """``floor(value)`` or ``ceil(value)``, with the expectation ``value``."""
    return math.floor(value + rng.random())


def _uniform_below(high: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One integer uniform in ``[0, high[i])`` for each ``i`` (to within float64 resolution)."""
    return np.minimum((rng.random(len(high)) * high).astype(np.int64), high - 1)


def _draw_cells(
    lo: np.ndarray, hi: np.ndarray, ranges_per_cell: np.ndarray, sizes: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Draw ``sizes[c]`` positions from each cell ``c``, a union of half-open ranges ``[lo[i], hi[i])``.

    The ranges of cell ``c`` are the ``ranges_per_cell[c]`` consecutive ones after those of cell ``c - 1``;
    cells are disjoint. Within a cell the draw is uniform over the union and without replacement, unless
    the cell holds fewer positions than asked. All cells are drawn together in O(sum(sizes) + len(lo)) work
    (duplicates are redrawn; a cell less than four times larger than its draw is drawn exactly instead).
    """
    lengths = hi - lo
    ends = np.cumsum(lengths)
    first = np.cumsum(ranges_per_cell) - ranges_per_cell
    cell_start = ends[first] - lengths[first]
    cell_total = ends[first + ranges_per_cell - 1] - cell_start
    cell = np.repeat(np.arange(len(sizes)), sizes)
    picks = _uniform_below(cell_total[cell], rng)
    for c in np.flatnonzero((cell_total >= sizes) & (cell_total < 4 * sizes)):
        picks[cell == c] = rng.choice(cell_total[c], size=sizes[c], replace=False, shuffle=False)
    distinct = cell_total[cell] >= 4 * sizes[cell]
    while True:
        picks_global = cell_start[cell] + picks
        order = np.argsort(picks_global, kind="stable")
        repeated = order[1:][picks_global[order[1:]] == picks_global[order[:-1]]]
        repeated = repeated[distinct[repeated]]
        if not len(repeated):
            break
        picks[repeated] = _uniform_below(cell_total[cell[repeated]], rng)
    which = np.searchsorted(ends, picks_global, side="right")
    return lo[which] + picks_global - (ends[which] - lengths[which])


class FlexibleBatchSampler(Sampler[list[int]]):
    """Batches of anchor positions that are experiment-pure, condition-balanced, time-focused and DDP-sharded.

    Every batch is drawn from its own generator ``np.random.default_rng((seed, epoch, batch))``, so an
    epoch is a fixed sequence of ``total_batches`` batches that every rank can build lazily, one batch
    at a time, in O(batch_size) work. Rank ``r`` of ``R`` yields batches ``r, r + R, r + 2R, ...`` of that
    sequence, padded with batches ``total_batches, total_batches + 1, ...`` drawn the same way, so that
    every rank yields exactly ``len(sampler)`` batches.

    The axes compose; with all of them on, one batch of ``n`` anchors is built as follows:

    1. *Experiment* (``experiment_aware``): one experiment ``e`` is drawn with probability proportional
       to ``experiment_weights`` (by default to its number of anchors).
    2. *Leak* (``leaky``): ``n * leaky`` anchors (rounded at random, exact in expectation) come from the
       other experiments, uniformly over their anchors; the rest come from ``e``.
    3. *Condition* (``condition_balanced``): the experiment's part and the leaked part are each split
       over the conditions by ``condition_ratio`` (equal by default), rounded at random with exact
       expectation, so each batch is balanced to within one anchor per condition.
    4. *Time* (``temporal_enrichment``): a focal HPI is drawn uniformly among the distinct
       ``hours_post_infection`` values of ``e`` (of all anchors when not experiment-aware). In every
       (part, condition) cell, a fraction ``1 - temporal_global_fraction`` of the anchors has
       ``|hpi - focal| <= temporal_window_hours`` and the rest lies outside that window (anywhere in the
       time course). A cell with no anchor in the window uses its anchors nearest in time instead; a
       cell with none outside it draws its global part from the window too.

    Within a cell anchors are drawn without replacement, unless the cell holds fewer than needed
    (an experiment with fewer anchors than ``batch_size`` is logged as a warning at construction).
    The batch is shuffled before it is yielded.

    Parameters
    ----------
    valid_anchors : pandas.DataFrame
        One row per anchor. Columns used: ``experiment`` (if ``experiment_aware``), ``condition`` (if
        ``condition_balanced``), ``hours_post_infection`` (if ``temporal_enrichment``). Any index:
        yielded values are positions (``valid_anchors.iloc[batch]``).
    batch_size : int
        Anchors per batch, >= 1.
    experiment_aware : bool
        Draw each batch from a single experiment (apart from the leak).
    leaky : float
        Fraction in [0, 1) of each batch drawn from the other experiments. Needs at least two
        experiments; ignored (with a warning) when ``experiment_aware`` is False.
    experiment_weights : dict[str, float] | None
        Relative probability of drawing each experiment; experiments left out get 0. None: proportional
        to the number of anchors. Ignored (with a warning) when ``experiment_aware`` is False.
    condition_balanced : bool
        Split each batch over the conditions by ``condition_ratio``.
    condition_ratio : dict[str, float] | None
        Relative share of each condition; conditions left out get ``1 / number of conditions`` before
        normalisation (a share of 0 leaves a condition out). None: equal shares. Ignored (with a
        warning) when ``condition_balanced`` is False. Every condition with a positive share must have
        anchors in every experiment that can be drawn (and, with a leak, in some other experiment).
    temporal_enrichment : bool
        Concentrate each batch around a focal HPI drawn per batch.
    temporal_window_hours : float
        Half-width, in hours, of the focal window: anchors with ``|hpi - focal| <= temporal_window_hours``.
    temporal_global_fraction : float
        Fraction in [0, 1] of each batch drawn outside the focal window (0: the whole batch from the window).
    num_replicas : int
        Number of DDP ranks (``trainer.world_size``).
    rank : int
        This process's rank, in ``[0, num_replicas)`` (``trainer.global_rank``).
    seed : int
        Non-negative seed; the same seed gives the same batches on every rank and in every run.
    drop_last : bool
        An epoch has ``len(valid_anchors) // batch_size`` full batches (True), or
        ``ceil(len(valid_anchors) / batch_size)`` batches, the last one of the remaining
        ``len(valid_anchors) % batch_size`` anchors (False): one epoch draws as many anchors as the table has.

    Raises
    ------
    TypeError
        If ``valid_anchors`` is not a DataFrame; for a ``Sampler`` (Lightning rebuilding the batch
        sampler around its ``DistributedSampler``), the message names ``use_distributed_sampler=False``.
    ValueError
        For a bad argument, a missing column (the message lists the columns present), missing values,
        a leak with a single experiment, weights or ratios naming unknown experiments or conditions, an
        empty (experiment, condition) stratum, or an epoch with no batch.

    Warns
    -----
    UserWarning
        When ``leaky > 0`` or ``experiment_weights`` is given with ``experiment_aware=False``, or
        ``condition_ratio`` with ``condition_balanced=False``: the parameter is ignored, as in the
        reference.

    Notes
    -----
    Under DDP the sampler shards the batches itself: pass ``num_replicas=trainer.world_size`` and
    ``rank=trainer.global_rank``, and build the trainer with ``Trainer(use_distributed_sampler=False)``,
    or Lightning tries to rebuild the batch sampler around its own ``DistributedSampler``.

    ``len(sampler) = ceil(total_batches / num_replicas)`` on every rank. The ranks' batches are
    disjoint and cover the epoch. When ``total_batches`` is not a multiple of ``R``, the last
    ``R * len - total_batches`` ranks end with one padding batch each: a full batch drawn fresh, like
    any other (no batch of the epoch is repeated).

    Each ``iter(sampler)`` starts the epoch ``sampler.epoch`` and advances ``sampler.epoch`` by one, since
    Lightning never calls ``set_epoch`` on a batch sampler; ``set_epoch(e)`` makes the next iteration use
    epoch ``e``. ``state_dict()`` / ``load_state_dict()`` carry the epoch and the number of batches this
    rank has yielded in it, so that the next iteration after loading yields exactly the rest of that
    epoch. The count is of batches handed out: a loader that prefetches takes batches before the model
    sees them, so whoever checkpoints a prefetching loader should store the number of batches consumed.

    Examples
    --------
    >>> import pandas as pd
    >>> anchors = pd.DataFrame(
    ...     {"experiment": ["a"] * 8 + ["b"] * 8, "condition": ["mock", "infected"] * 8}
    ... )
    >>> sampler = FlexibleBatchSampler(anchors, batch_size=4, seed=0)
    >>> len(sampler), len(next(iter(sampler)))
    (4, 4)
    """

    def __init__(
        self,
        valid_anchors: pd.DataFrame,
        batch_size: int = 128,
        experiment_aware: bool = True,
        leaky: float = 0.0,
        experiment_weights: dict[str, float] | None = None,
        condition_balanced: bool = True,
        condition_ratio: dict[str, float] | None = None,
        temporal_enrichment: bool = False,
        temporal_window_hours: float = 2.0,
        temporal_global_fraction: float = 0.3,
        num_replicas: int = 1,
        rank: int = 0,
        seed: int = 0,
        drop_last: bool = True,
    ) -> None:
        if isinstance(valid_anchors, Sampler):
            raise TypeError(
                f"FlexibleBatchSampler got a {type(valid_anchors).__name__} instead of its valid_anchors DataFrame: "
                "Lightning is rebuilding it around its own distributed sampler. FlexibleBatchSampler shards the "
                "batches over the ranks itself (num_replicas, rank): set Trainer(use_distributed_sampler=False)."
            )
        if not isinstance(valid_anchors, pd.DataFrame):
            raise TypeError(f"valid_anchors must be a pandas DataFrame, got {type(valid_anchors).__name__}")
        self.valid_anchors = valid_anchors
        self.batch_size = _check_int("batch_size", batch_size, 1)
        self.num_replicas = _check_int("num_replicas", num_replicas, 1)
        self.rank = _check_int("rank", rank, 0)
        if self.rank >= self.num_replicas:
            raise ValueError(f"rank must be in [0, num_replicas={self.num_replicas}), got {rank}")
        self.seed = _check_int("seed", seed, 0)
        self.experiment_aware = bool(experiment_aware)
        self.condition_balanced = bool(condition_balanced)
        self.temporal_enrichment = bool(temporal_enrichment)
        self.drop_last = bool(drop_last)
        self.leaky = _check_fraction("leaky", leaky, upper_open=True)
        self.temporal_global_fraction = _check_fraction("temporal_global_fraction", temporal_global_fraction)
        if not isinstance(temporal_window_hours, Real) or not 0 <= temporal_window_hours < math.inf:
            raise ValueError(f"temporal_window_hours must be a finite number >= 0, got {temporal_window_hours!r}")
        self.temporal_window_hours = float(temporal_window_hours)
        self.experiment_weights = experiment_weights
        self.condition_ratio = condition_ratio
        self._ignore_options_of_disabled_axes()
        self._check_columns()

        n_rows = len(valid_anchors)
        if n_rows == 0:
            raise ValueError("valid_anchors is empty")
        self._full_batches = n_rows // self.batch_size
        self._last_size = n_rows % self.batch_size
        self.total_batches = self._full_batches + (1 if self._last_size and not self.drop_last else 0)
        if self.total_batches == 0:
            raise ValueError(
                f"valid_anchors has {n_rows} rows, fewer than batch_size={self.batch_size}, and drop_last=True: "
                "an epoch would have no batch"
            )

        self._build_strata()
        self.epoch = 0
        self._resume_at = 0
        self._progress: list[int] | None = None  # [epoch, batches yielded] of the iteration in progress

    def _ignore_options_of_disabled_axes(self) -> None:
        """Warn about, and drop, the options of an axis that is off (the reference ignores them silently)."""
        options = [
            ("leaky", self.leaky > 0, 0.0, "experiment_aware"),
            ("experiment_weights", self.experiment_weights is not None, None, "experiment_aware"),
            ("condition_ratio", self.condition_ratio is not None, None, "condition_balanced"),
        ]
        for name, given, off_value, axis in options:
            if given and not getattr(self, axis):
                warnings.warn(
                    f"{name}={getattr(self, name)!r} is ignored because {axis}=False",
                    UserWarning,
                    stacklevel=3,
                )
                setattr(self, name, off_value)

    def _check_columns(self) -> None:
        needed = {
            EXPERIMENT_COLUMN: self.experiment_aware,
            CONDITION_COLUMN: self.condition_balanced,
            HPI_COLUMN: self.temporal_enrichment,
        }
        features = {
            EXPERIMENT_COLUMN: "experiment_aware",
            CONDITION_COLUMN: "condition_balanced",
            HPI_COLUMN: "temporal_enrichment",
        }
        missing = [column for column, used in needed.items() if used and column not in self.valid_anchors.columns]
        if missing:
            wanted = ", ".join(f"{column!r} (for {features[column]}=True)" for column in missing)
            raise ValueError(
                f"valid_anchors lacks column(s) {wanted}; its columns are {list(self.valid_anchors.columns)}"
            )

    def _build_strata(self) -> None:
        """Sort the anchors by (experiment, condition, HPI) once; every cell of a batch is then a few ranges."""
        frame = self.valid_anchors
        n_rows = len(frame)
        if self.experiment_aware:
            experiment, self.experiments = _codes(frame, EXPERIMENT_COLUMN)
        else:
            experiment, self.experiments = np.zeros(n_rows, dtype=np.int64), []
        if self.condition_balanced:
            condition, self.conditions = _codes(frame, CONDITION_COLUMN)
        else:
            condition, self.conditions = np.zeros(n_rows, dtype=np.int64), []
        n_groups = max(len(self.experiments), 1)
        n_strata = max(len(self.conditions), 1)
        self._n_strata = n_strata
        block = experiment * n_strata + condition
        counts = np.bincount(block, minlength=n_groups * n_strata).reshape(n_groups, n_strata)
        bounds = np.concatenate([[0], np.cumsum(counts.ravel())])
        self._starts, self._ends = bounds[:-1], bounds[1:]

        group_sizes = counts.sum(axis=1)
        if self.experiment_weights is not None:
            probabilities = _weights_vector(
                "experiment_weights", self.experiment_weights, self.experiments, 0.0, "experiment"
            )
        else:
            probabilities = group_sizes / n_rows
        self._group_cdf = np.cumsum(probabilities)
        if self.condition_ratio is not None:
            self._ratio = _weights_vector(
                "condition_ratio", self.condition_ratio, self.conditions, 1.0 / n_strata, "condition"
            )
        else:
            self._ratio = np.full(n_strata, 1.0 / n_strata)
        self._cum_ratio = np.cumsum(self._ratio)
        self._largest_ratio = int(np.argmax(self._ratio))
        self._check_strata(counts, probabilities > 0)
        strata = np.arange(n_strata)
        self._cell_blocks = []
        for group in range(n_groups):
            cells = [group * n_strata + strata]  # one cell per condition: this experiment's block
            if self.leaky:  # and one per condition of the other experiments' blocks
                others = np.delete(np.arange(n_groups), group)
                cells.append((strata[:, None] + others[None, :] * n_strata).ravel())
            self._cell_blocks.append(np.concatenate(cells))
        self._ranges_per_cell = np.repeat([1, n_groups - 1], n_strata) if self.leaky else np.ones(n_strata, np.int64)

        if self.temporal_enrichment:
            hpi = frame[HPI_COLUMN].to_numpy(dtype=np.float64)
            if not np.all(np.isfinite(hpi)):
                bad = int(np.count_nonzero(~np.isfinite(hpi)))
                raise ValueError(f"valid_anchors column {HPI_COLUMN!r} has {bad} missing or infinite values")
            self._hpi_min, self._hpi_max = float(hpi.min()), float(hpi.max())
            self._span = self._hpi_max - self._hpi_min + 1.0
            key = block * self._span + (hpi - self._hpi_min)  # sorted key: blocks apart, HPI within a block
            self._order = np.argsort(key, kind="stable")
            sorted_key = key[self._order]
            self._hpi = hpi[self._order]
            # distinct (block, HPI) keys and where each starts: windows are searched in this small table
            self._key_start = np.flatnonzero(np.diff(sorted_key, prepend=-math.inf) > 0)
            self._key = sorted_key[self._key_start]
            self._key_start = np.append(self._key_start, n_rows)
            group_bounds = bounds[:: self._n_strata]
            focal = [np.unique(self._hpi[group_bounds[g] : group_bounds[g + 1]]) for g in range(n_groups)]
            self._focal_values = np.concatenate(focal)
            self._focal_bounds = np.concatenate([[0], np.cumsum([len(values) for values in focal])])
        else:
            self._order = np.argsort(block, kind="stable")

        small = [
            f"{name!r} ({size})"
            for name, size, p in zip(self.experiments or ["valid_anchors"], group_sizes, probabilities, strict=True)
            if p > 0 and size < self.batch_size
        ]
        if small:
            _logger.warning(
                "Experiments with fewer anchors than batch_size=%d repeat anchors within a batch: %s",
                self.batch_size,
                ", ".join(small),
            )

    def _check_strata(self, counts: np.ndarray, drawable: np.ndarray) -> None:
        """Fail when a batch could need anchors from an empty (experiment, condition) stratum."""
        if self.leaky > 0 and len(self.experiments) < 2:
            raise ValueError(
                f"leaky={self.leaky} mixes in anchors of other experiments, but valid_anchors has a single "
                f"experiment {self.experiments}; set leaky=0"
            )
        wanted = self._ratio > 0
        other = counts.sum(axis=0, keepdims=True) - counts
        checks = [(counts, "has no anchors of condition {c!r} (its conditions: {present})")]
        if self.leaky > 0:
            checks.append((other, "leaks anchors of condition {c!r} from other experiments, but none has any"))
        for table, message in checks:
            empty = np.argwhere((table == 0) & drawable[:, None] & wanted[None, :])
            if len(empty):
                group, stratum = empty[0]
                names = self.conditions or ["(any)"]
                present = [names[s] for s in np.flatnonzero(counts[group])]
                where = f"experiment {self.experiments[group]!r}" if self.experiment_aware else "valid_anchors"
                raise ValueError(
                    f"empty stratum: {where} "
                    + message.format(c=names[stratum], present=present)
                    + "; give the experiment an experiment_weights of 0, give the condition a condition_ratio "
                    "of 0, or set condition_balanced=False"
                )

    def __len__(self) -> int:
        return -(-self.total_batches // self.num_replicas)

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration yield epoch ``epoch`` from its start.

        Parameters
        ----------
        epoch : int
            Non-negative epoch number.
        """
        self.epoch = _check_int("epoch", epoch, 0)
        self._resume_at = 0

    def state_dict(self) -> dict[str, int]:
        """Position of this sampler: the epoch to run next and how many of its batches this rank has yielded.

        Returns
        -------
        dict[str, int]
            ``epoch``, ``batches_yielded`` and ``num_replicas``. Mid-epoch, the epoch in progress and the
            batches yielded so far; between epochs, the next epoch and 0.
        """
        if self._progress is not None and self._progress[1] < len(self):
            epoch, done = self._progress
        else:
            epoch, done = self.epoch, self._resume_at
        return {"epoch": epoch, "batches_yielded": done, "num_replicas": self.num_replicas}

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        """Resume from :meth:`state_dict`: the next iteration yields the rest of the saved epoch.

        Parameters
        ----------
        state : Mapping[str, int]
            As returned by :meth:`state_dict` (``num_replicas`` may be absent).

        Raises
        ------
        ValueError
            If the state was saved mid-epoch with another number of replicas, or is out of range.
        """
        epoch = _check_int("state['epoch']", state["epoch"], 0)
        done = _check_int("state['batches_yielded']", state["batches_yielded"], 0)
        replicas = state.get("num_replicas", self.num_replicas)
        if done and replicas != self.num_replicas:
            raise ValueError(
                f"the state was saved mid-epoch with num_replicas={replicas}; this sampler has "
                f"num_replicas={self.num_replicas}, so the rest of that epoch is not defined"
            )
        if done > len(self):
            raise ValueError(f"state['batches_yielded']={done} exceeds the {len(self)} batches of an epoch")
        self.epoch, self._resume_at = (epoch + 1, 0) if done == len(self) else (epoch, done)
        self._progress = None

    def __iter__(self) -> Iterator[list[int]]:
        epoch, start = self.epoch, self._resume_at
        self.epoch, self._resume_at = epoch + 1, 0
        self._progress = [epoch, start]
        return self._iterate(epoch, start, self._progress)

    def _iterate(self, epoch: int, start: int, progress: list[int]) -> Iterator[list[int]]:
        for step in range(start, len(self)):
            batch = self.batch(epoch, self.rank + step * self.num_replicas)
            progress[1] = step + 1
            yield batch

    def batch(self, epoch: int, index: int) -> list[int]:
        """Build batch ``index`` of epoch ``epoch`` (the same on every rank).

        Parameters
        ----------
        epoch : int
            Epoch number.
        index : int
            Batch number in the epoch, in ``[0, total_batches)``; from ``total_batches`` on, a padding
            batch of ``batch_size`` anchors that evens out the ranks.

        Returns
        -------
        list[int]
            Positions into ``valid_anchors``.
        """
        rng = np.random.default_rng((self.seed, epoch, index))
        short_last_batch = index == self._full_batches and index < self.total_batches
        size = self._last_size if short_last_batch else self.batch_size
        group = int(np.searchsorted(self._group_cdf, rng.random() * self._group_cdf[-1], side="right"))
        blocks, ranges_per_cell = self._cell_blocks[group], self._ranges_per_cell
        if self.leaky:
            n_leak = _round_randomly(size * self.leaky, rng)
            sizes = np.concatenate([self._apportion(size - n_leak, rng), self._apportion(n_leak, rng)])
        else:
            sizes = self._apportion(size, rng)
        lo, hi = self._starts[blocks], self._ends[blocks]
        if self.temporal_enrichment:
            low, high = self._focal_bounds[group], self._focal_bounds[group + 1]
            focal = float(self._focal_values[low + rng.integers(high - low)])
            lo, hi, ranges_per_cell, sizes = self._enrich(blocks, lo, hi, ranges_per_cell, sizes, focal, rng)
        positions = _draw_cells(lo, hi, ranges_per_cell, sizes, rng)
        rng.shuffle(positions)
        return self._order[positions].tolist()

    def _apportion(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Split ``n`` over the conditions by their ratios, each share rounded up or down with exact expectation.

        Systematic sampling: the points ``u, u + 1, ..., u + n - 1`` (one uniform ``u``) fall into the
        ratios laid end to end on ``[0, n)``; a condition of ratio 0 gets none.
        """
        bounds = np.ceil(n * self._cum_ratio - rng.random()).astype(np.int64)
        counts = np.empty_like(bounds)
        counts[0] = bounds[0]
        counts[1:] = bounds[1:] - bounds[:-1]
        counts[self._largest_ratio] += n - bounds[-1]  # float rounding of the last bound
        return counts

    def _enrich(
        self,
        blocks: np.ndarray,
        lo: np.ndarray,
        hi: np.ndarray,
        ranges_per_cell: np.ndarray,
        sizes: np.ndarray,
        focal: float,
        rng: np.random.Generator,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Split every cell into its focal-window part and its global part (the anchors outside the window).

        Returns the ranges, ranges per cell and sizes of the focal cells followed by the global cells.
        """
        first = np.cumsum(ranges_per_cell) - ranges_per_cell
        window = self.temporal_window_hours
        in_lo, in_hi = self._ranges_between(blocks, focal - window, focal + window)
        inside = np.add.reduceat(in_hi - in_lo, first)
        for cell in np.flatnonzero((inside == 0) & (sizes > 0)):
            part = slice(first[cell], first[cell] + ranges_per_cell[cell])
            in_lo[part], in_hi[part] = self._nearest(blocks[part], lo[part], hi[part], focal)
        outside = np.add.reduceat((hi - lo) - (in_hi - in_lo), first)
        n_global = np.floor(sizes * self.temporal_global_fraction + rng.random(len(sizes))).astype(np.int64)
        n_global[outside == 0] = 0
        out_lo, out_hi = np.empty(2 * len(lo), np.int64), np.empty(2 * len(lo), np.int64)
        out_lo[0::2], out_lo[1::2] = lo, in_hi  # before and after the window, block by block
        out_hi[0::2], out_hi[1::2] = in_lo, hi
        return (
            np.concatenate([in_lo, out_lo]),
            np.concatenate([in_hi, out_hi]),
            np.concatenate([ranges_per_cell, 2 * ranges_per_cell]),
            np.concatenate([sizes - n_global, n_global]),
        )

    def _nearest(
        self, blocks: np.ndarray, lo: np.ndarray, hi: np.ndarray, focal: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Ranges of the anchors of ``blocks`` nearest in time to ``focal`` (for a cell with none in the window)."""
        at = self._ranges_between(blocks, focal, focal)[0]
        candidates = np.concatenate([at - 1, at])
        valid = np.concatenate([at - 1 >= lo, at < hi])
        distance = float(np.abs(self._hpi[candidates[valid]] - focal).min())
        return self._ranges_between(
            blocks, np.nextafter(focal - distance, -math.inf), np.nextafter(focal + distance, math.inf)
        )

    def _ranges_between(self, blocks: np.ndarray, low: float, high: float) -> tuple[np.ndarray, np.ndarray]:
        """Per block, the sorted-position range of the anchors with ``low <= hpi <= high``."""
        low = min(max(low, self._hpi_min), self._hpi_max)
        high = min(max(high, self._hpi_min), self._hpi_max)
        base = blocks * self._span
        return (
            self._key_start[np.searchsorted(self._key, base + (low - self._hpi_min), side="left")],
            self._key_start[np.searchsorted(self._key, base + (high - self._hpi_min), side="right")],
        )
