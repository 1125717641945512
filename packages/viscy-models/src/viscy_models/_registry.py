"""Name registry: models register themselves where they are defined, and any of them is built from its name."""

from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

ModelT = TypeVar("ModelT", bound=type[nn.Module])

MODELS: dict[str, type[nn.Module]] = {}
"""Registered model classes by name, in registration order (filled by :func:`register_model`)."""


def register_model(name: str) -> Callable[[ModelT], ModelT]:
    """Register an ``nn.Module`` class under ``name`` for :func:`get_model` and :func:`list_models`.

    Use it as a class decorator where the model is defined; the class is returned unchanged. Registration happens
    when the defining module is imported, so the module must be imported by ``import viscy_models`` (through its
    family's ``__init__.py``); the order of those imports is the order of :func:`list_models`.

    Parameters
    ----------
    name : str
        Registry name, e.g. ``"unext2"``.

    Returns
    -------
    Callable[[type[nn.Module]], type[nn.Module]]
        The class decorator.

    Raises
    ------
    ValueError
        When the decorator is applied and ``name`` is already registered; the message names the registered class.
    TypeError
        When the decorated object is not an ``nn.Module`` subclass.

    Examples
    --------
    >>> from torch import nn
    >>> from viscy_models import register_model
    >>> @register_model("tiny_identity")
    ... class TinyIdentity(nn.Module):
    ...     def forward(self, x):
    ...         return x
    """

    def decorator(cls: ModelT) -> ModelT:
        if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
            raise TypeError(f"register_model({name!r}) decorates nn.Module subclasses, got {cls!r}.")
        if name in MODELS:
            existing = MODELS[name]
            raise ValueError(
                f"Model name {name!r} is already registered to {existing.__module__}.{existing.__qualname__}."
            )
        MODELS[name] = cls
        return cls

    return decorator


def list_models() -> list[str]:
    """Return the names accepted by :func:`get_model`, in registration order."""
    return list(MODELS)


def get_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a model by registry name.

    Parameters
    ----------
    name : str
        One of :func:`list_models`, e.g. ``"unext2"`` or ``"contrastive_encoder"``.
    **kwargs : Any
        Constructor arguments of the model class.

    Returns
    -------
    nn.Module
        The constructed model.

    Raises
    ------
    ValueError
        If ``name`` is not registered; the message lists the registered names.
    """
    if name not in MODELS:
        raise ValueError(f"Unknown model {name!r}; available models: {', '.join(MODELS)}.")
    return MODELS[name](**kwargs)
