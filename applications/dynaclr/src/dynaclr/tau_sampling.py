"""Temporal offsets ``tau`` (in frames) between an anchor and its positive, favouring small ones."""

from __future__ import annotations

from typing import overload

import numpy as np

__all__ = ["sample_tau", "tau_probabilities"]


def tau_probabilities(tau_min: int, tau_max: int, decay_rate: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """Offsets ``tau_min..tau_max`` except 0 and their exponentially decaying probabilities.

    An offset ``tau`` has weight ``exp(-decay_rate * (|tau| - a) / (b - a))``, where ``a`` and
    ``b`` are the smallest and largest ``|tau|`` of the range (``a = 0`` when the range spans
    0). For ``0 <= tau_min`` this is ``exp(-decay_rate * (tau - tau_min) / (tau_max - tau_min))``:
    ``tau_min`` is the likeliest offset and ``tau_max`` is ``exp(decay_rate)`` times less likely.
    ``tau = 0`` (the anchor's own frame) is never an offset; the others keep their weights.

    Parameters
    ----------
    tau_min, tau_max : int
        Inclusive range of offsets in frames.
    decay_rate : float
        Decay over the range (>= 0); 0 is uniform.

    Returns
    -------
    taus : np.ndarray
        The offsets (int64), ascending.
    probabilities : np.ndarray
        Their probabilities (float64), summing to 1.

    Raises
    ------
    ValueError
        If the bounds are not integers, ``tau_min > tau_max``, the range holds no offset
        other than 0, or ``decay_rate`` is negative.
    """
    if int(tau_min) != tau_min or int(tau_max) != tau_max:
        raise ValueError(f"tau_min and tau_max must be integers (frames), got ({tau_min}, {tau_max}).")
    tau_min, tau_max = int(tau_min), int(tau_max)
    if tau_min > tau_max:
        raise ValueError(f"tau_min ({tau_min}) must not exceed tau_max ({tau_max}).")
    if not decay_rate >= 0:
        raise ValueError(f"decay_rate must be >= 0, got {decay_rate}.")
    taus = np.arange(tau_min, tau_max + 1, dtype=np.int64)
    taus = taus[taus != 0]
    if taus.size == 0:
        raise ValueError(
            f"The tau range [{tau_min}, {tau_max}] frames holds no offset other than 0 "
            "(a positive in the anchor's own frame); widen tau_range."
        )
    offsets = np.abs(taus)
    nearest = 0 if tau_min <= 0 <= tau_max else min(abs(tau_min), abs(tau_max))
    farthest = max(abs(tau_min), abs(tau_max))
    spread = max(farthest - nearest, 1)
    weights = np.exp(-decay_rate * (offsets - nearest) / spread)
    return taus, weights / weights.sum()


@overload
def sample_tau(
    tau_min: int, tau_max: int, rng: np.random.Generator, decay_rate: float = ..., size: None = ...
) -> int: ...


@overload
def sample_tau(
    tau_min: int, tau_max: int, rng: np.random.Generator, decay_rate: float = ..., *, size: int | tuple[int, ...]
) -> np.ndarray: ...


def sample_tau(
    tau_min: int,
    tau_max: int,
    rng: np.random.Generator,
    decay_rate: float = 2.0,
    size: int | tuple[int, ...] | None = None,
) -> int | np.ndarray:
    """Draw temporal offsets in ``[tau_min, tau_max]`` frames, never 0, favouring small ones.

    The distribution is :func:`tau_probabilities`: exponential decay over the range, so
    ``decay_rate=0`` is uniform and larger values concentrate on the smallest offset. With
    ``tau_min == 0`` (e.g. a tau range starting at 0 hours) 0 is excluded, so the anchor is
    never its own positive.

    Parameters
    ----------
    tau_min, tau_max : int
        Inclusive range of offsets in frames.
    rng : np.random.Generator
        Source of randomness (no global RNG is used).
    decay_rate : float
        Decay over the range (>= 0).
    size : int or tuple of int, optional
        Shape of an array of independent draws; default one draw.

    Returns
    -------
    int or np.ndarray
        One offset as a Python ``int``, or an int64 array of shape ``size``.

    Raises
    ------
    ValueError
        As :func:`tau_probabilities`.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> tau = sample_tau(0, 4, rng)
    >>> isinstance(tau, int) and 1 <= tau <= 4
    True
    >>> sample_tau(1, 4, rng, size=3).shape
    (3,)
    """
    taus, probabilities = tau_probabilities(tau_min, tau_max, decay_rate)
    draws = rng.choice(taus, size=size, p=probabilities)
    return int(draws) if size is None else draws
