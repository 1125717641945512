"""Progress lines for logs: when one is due, and the rate and remaining time it shows.

Shared by :class:`~viscy_utils.callbacks.LogProgress` (training, validation, test and predict)
and :func:`~viscy_utils.meta_utils.generate_normalization_metadata` (``viscy preprocess``).
"""

from __future__ import annotations

import math
from time import monotonic

__all__ = ["ProgressMeter", "format_count", "format_duration", "format_rate"]


def format_duration(seconds: float) -> str:
    """Write a duration as ``H:MM:SS``.

    Parameters
    ----------
    seconds : float
        Duration; infinite or NaN when unknown.

    Returns
    -------
    str
        ``"0:01:05"`` for 65 s, ``"27:46:40"`` for 100000 s, ``"?"`` when unknown.
    """
    if not math.isfinite(seconds):
        return "?"
    minutes, secs = divmod(round(max(seconds, 0.0)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def format_count(done: int, total: float) -> str:
    """Write progress as ``"12/40 (30%)"``.

    Parameters
    ----------
    done : int
        Steps done.
    total : float
        Steps to do; ``math.inf`` when unknown.

    Returns
    -------
    str
        ``"12/40 (30%)"``, or ``"12"`` when the total is unknown.
    """
    if not math.isfinite(total) or total <= 0:
        return str(done)
    return f"{done}/{int(total)} ({done / total:.0%})"


def format_rate(per_second: float) -> str:
    """Write a rate with three significant digits, never in exponent notation.

    Parameters
    ----------
    per_second : float
        Rate; NaN when unknown.

    Returns
    -------
    str
        ``"0.0333"``, ``"2.41"``, ``"1234"``, or ``"?"`` when unknown.
    """
    if not math.isfinite(per_second):
        return "?"
    return f"{per_second:.0f}" if per_second >= 100 else f"{per_second:.3g}"


class ProgressMeter:
    """Count the steps and items done since a start, and say when a progress line is due.

    A line is due every ``every_n_steps`` steps or every ``every_n_seconds`` seconds since the
    last one, whichever comes first. Time is read from :func:`time.monotonic`.

    Parameters
    ----------
    total : float
        Steps to do; ``math.inf`` when unknown.
    every_n_steps : int, optional
        Steps between lines; None for no step trigger.
    every_n_seconds : float, optional
        Seconds between lines; None for no time trigger.
    """

    def __init__(self, total: float, every_n_steps: int | None = None, every_n_seconds: float | None = 60.0) -> None:
        self.total = total
        self.every_n_steps = every_n_steps
        self.every_n_seconds = every_n_seconds
        self.steps = 0
        self.items = 0
        self.start = monotonic()
        self._last_line_time = self.start
        self._last_line_step = 0

    def update(self, items: int = 0) -> bool:
        """Count one step of ``items`` items and return whether a progress line is due."""
        self.steps += 1
        self.items += items
        now = monotonic()
        due = (self.every_n_steps is not None and self.steps - self._last_line_step >= self.every_n_steps) or (
            self.every_n_seconds is not None and now - self._last_line_time >= self.every_n_seconds
        )
        if due:
            self._last_line_time, self._last_line_step = now, self.steps
        return due

    @property
    def elapsed(self) -> float:
        """Seconds since the start."""
        return monotonic() - self.start

    def rates(self) -> tuple[float, float]:
        """Return steps per second and items per second since the start (NaN before any time has passed)."""
        elapsed = self.elapsed
        if elapsed <= 0:
            return math.nan, math.nan
        return self.steps / elapsed, self.items / elapsed

    def eta(self, remaining: float) -> float:
        """Seconds left for ``remaining`` more steps at the mean pace so far (``math.inf`` when unknown)."""
        if self.steps == 0 or not math.isfinite(remaining):
            return math.inf
        return self.elapsed / self.steps * max(remaining, 0)
