"""Parameters kept only so that configs of the reference system load.

The reference accepted some arguments and ignored them. Configs that write their default keep
loading here; any other value is refused with a message naming what to use instead, so that no
accepted parameter silently does nothing.
"""

from __future__ import annotations

from typing import Any

__all__ = ["accept_default_only"]


def accept_default_only(name: str, value: Any, default: Any, instead: str) -> None:
    """Refuse any value but the default of a parameter kept only so that reference configs load.

    Parameters
    ----------
    name : str
        The parameter, as a config writes it.
    value : Any
        The value given.
    default : Any
        The reference default, the only value accepted (silently).
    instead : str
        What to use instead, ending the error message.

    Raises
    ------
    ValueError
        If ``value`` differs from ``default``.
    """
    if value != default:
        raise ValueError(
            f"{name}={value!r} is not supported: {name} is accepted only with its default {default!r}, "
            f"so that reference configs load; {instead}."
        )
