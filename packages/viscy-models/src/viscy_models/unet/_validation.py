"""Argument checks shared by the U-Nets."""

from collections.abc import Sequence

TASKS: tuple[str, ...] = ("seg", "reg")


def validate_task(task: str) -> None:
    """Raise ValueError unless ``task`` is "seg" or "reg"."""
    if task not in TASKS:
        raise ValueError(f"Unknown task {task!r}; choose one of {TASKS}.")


def resolve_num_filters(num_filters: Sequence[int], num_blocks: int) -> tuple[int, ...]:
    """Return ``num_filters``, or ``16 * 2**i`` for ``i`` in ``0..num_blocks`` when it is empty.

    Raises
    ------
    ValueError
        If an explicit ``num_filters`` does not have ``num_blocks + 1`` entries.
    """
    if num_blocks < 1:
        raise ValueError(f"num_blocks must be at least 1, got {num_blocks}.")
    if not num_filters:
        return tuple(16 * 2**i for i in range(num_blocks + 1))
    if len(num_filters) != num_blocks + 1:
        raise ValueError(
            f"num_filters needs num_blocks + 1 = {num_blocks + 1} entries (one per block plus the bottom), "
            f"got {len(num_filters)}: {tuple(num_filters)}."
        )
    return tuple(num_filters)
