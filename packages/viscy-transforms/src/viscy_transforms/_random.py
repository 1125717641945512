"""The random transforms' base: parameters drawn from a torch generator each transform owns, then applied."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Sequence
from numbers import Real
from typing import ClassVar, Generic, Self, TypeVar

import numpy as np
import torch
from monai.transforms import Randomizable, Transform
from monai.utils import MAX_SEED
from numpy.typing import DTypeLike
from torch import Tensor

__all__ = [
    "BATCH_AND_SPATIAL_SHAPES",
    "ParametersNotDrawnError",
    "RandomTransform",
    "TorchRandomizable",
    "apply_to_selected",
    "check_batch_shape",
    "check_drawn_batch_size",
    "check_interval",
    "check_kept_dtype",
    "check_probability",
    "field_generator",
]

P = TypeVar("P")

#: ``RandomTransform.shared_shape`` of transforms whose parameters depend on the spatial shape too
BATCH_AND_SPATIAL_SHAPES = ((slice(0, 1), "batch sizes"), (slice(2, None), "spatial shapes"))

#: layout names of the batch ranks, for messages
_BATCH_LAYOUTS = {4: "(B, C, Y, X)", 5: "(B, C, Z, Y, X)"}


class TorchRandomizable(Randomizable):
    """A MONAI ``Randomizable`` whose draws come from a ``torch.Generator`` it owns.

    Every random parameter (which samples are selected, per-sample angles, gammas, sigmas...) is
    drawn on this CPU generator, so a seed gives the same parameters whatever device the data is
    on. Large random fields (noise, displacement fields, permutations) are drawn on the data's
    device from a generator seeded by a value drawn here (see :func:`field_generator`).

    The generator is seeded at construction from torch's global RNG, so ``torch.manual_seed`` (or
    Lightning's ``seed_everything``) called before building a pipeline makes it reproducible.
    ``set_random_state(seed=...)`` reseeds it explicitly; MONAI's ``Compose.set_random_state`` and
    MONAI's DataLoader worker seeding reach it that way. The global numpy RNG is never used.
    """

    def _init_random_state(self) -> None:
        self._reseed(int(torch.randint(MAX_SEED, (1,)).item()))

    def _reseed(self, seed: int) -> None:
        self._generator = torch.Generator()
        self._generator.manual_seed(seed)

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None) -> Self:
        """Reseed the transform.

        Parameters
        ----------
        seed : int | None
            Integer seed. The same seed gives the same draws.
        state : numpy.random.RandomState | None
            Used when ``seed`` is None: the seed is drawn from it.
            With neither, the generator is seeded from OS entropy.

        Returns
        -------
        Self
            The transform itself.
        """
        super().set_random_state(seed=seed, state=state)
        if seed is not None:
            self._reseed(int(seed) % MAX_SEED)
        elif state is not None:
            self._reseed(int(state.randint(MAX_SEED)))
        else:
            self._reseed(torch.Generator().seed() % MAX_SEED)
        return self

    def _draw_seed(self) -> int:
        """Draw a seed for a field generator (see :func:`field_generator`)."""
        return int(torch.randint(MAX_SEED, (1,), generator=self._generator).item())

    def _bernoulli(self, n: int, prob: float) -> Tensor:
        """Draw ``n`` independent Bernoulli(prob) decisions as a boolean CPU tensor."""
        return torch.rand(n, generator=self._generator, dtype=torch.float64) < prob

    def _uniform(self, low: float | Tensor, high: float | Tensor, size: Sequence[int] | int) -> Tensor:
        """Draw float64 CPU values uniformly from ``[low, high)``; tensor bounds broadcast against ``size``."""
        size = (size,) if isinstance(size, int) else tuple(size)
        return low + (high - low) * torch.rand(size, generator=self._generator, dtype=torch.float64)


class ParametersNotDrawnError(RuntimeError, ValueError):
    """A transform was asked to reuse its previous draw before it drew any parameters.

    Both a RuntimeError and a ValueError, the two types that the transforms raised for it before
    they shared a base class.
    """


class RandomTransform(TorchRandomizable, Transform, Generic[P]):
    """A random transform whose random parameters are drawn apart from applying them.

    A subclass implements two methods:

    - ``draw_parameters(shape)`` draws everything random about one call, for data of that
      shape, from the transform's own generator and returns it as a parameter object (a frozen
      dataclass of CPU tensors, one entry per sample of a batch);
    - ``apply(data, params)`` applies those parameters to ``data``, deterministically, and checks
      that they fit it.

    Calling the transform draws, keeps the draw in :attr:`params` and applies it. A caller can
    inspect the parameters, apply them again to other data of the same shape (``randomize=False``
    reuses the latest draw, ``params=`` applies any), or draw them without applying anything.
    The dictionary version of a transform (see ``SharedDrawMapTransform``) draws once per sample
    and applies the same parameters to all its keys.

    Subclasses validate their constructor arguments, then call ``super().__init__()``, which
    seeds the generator (see :class:`TorchRandomizable`).

    Attributes
    ----------
    params : P | None
        The latest draw, None before the first.
    shared_shape : tuple[tuple[slice, str], ...]
        The parts of the data's shape that the parameters are drawn for, each with its name for
        messages: the dictionary version applies one draw to several keys only where these agree.
        Default: the batch size.
    """

    runs_on_batches: ClassVar[bool] = True

    shared_shape: tuple[tuple[slice, str], ...] = ((slice(0, 1), "batch sizes"),)

    def __init__(self) -> None:
        self.params: P | None = None
        self._init_random_state()

    @abstractmethod
    def draw_parameters(self, shape: Sequence[int]) -> P:
        """Draw the random parameters of one call on data of ``shape``.

        Parameters
        ----------
        shape : Sequence[int]
            Shape of the data the parameters are for (batch first for batched transforms).

        Returns
        -------
        P
            The parameters, to pass to :meth:`apply`.
        """

    @abstractmethod
    def apply(self, data: Tensor, params: P) -> Tensor:
        """Apply drawn parameters to ``data``.

        Parameters
        ----------
        data : Tensor
            Data of a shape the parameters were drawn for.
        params : P
            Parameters from :meth:`draw_parameters`.

        Returns
        -------
        Tensor
            The transformed data.
        """

    def randomize(self, data: Tensor) -> None:
        """Draw new parameters for data like ``data`` and keep them in :attr:`params`."""
        self.params = self.draw_parameters(data.shape)

    def resolve_parameters(self, data: Tensor, randomize: bool = True, params: P | None = None) -> P:
        """Return the parameters a call on ``data`` applies: ``params`` if given, else a new or the latest draw.

        Parameters
        ----------
        data : Tensor
            The data of the call.
        randomize : bool
            Without ``params``: draw new parameters (default) or reuse the latest draw.
        params : P | None
            Parameters to apply; they leave :attr:`params` as it is.

        Returns
        -------
        P
            The parameters to apply.

        Raises
        ------
        ParametersNotDrawnError
            If the latest draw is asked for before any draw.
        """
        if params is not None:
            return params
        if randomize:
            self.randomize(data)
        if self.params is None:
            raise ParametersNotDrawnError(
                f"{type(self).__name__} has drawn no parameters yet: call it with randomize=True first"
            )
        return self.params

    @torch.no_grad()
    def __call__(self, data: Tensor, randomize: bool = True, params: P | None = None) -> Tensor:
        """Transform ``data`` with new random parameters, the latest ones, or the given ones.

        Parameters
        ----------
        data : Tensor
            The data (a batch, batch first, for batched transforms).
        randomize : bool
            Draw new parameters (default) or reuse the latest draw.
        params : P | None
            Parameters to apply instead, from :meth:`draw_parameters` or :attr:`params`.

        Returns
        -------
        Tensor
            The transformed data, with the shape rules of the transform; samples that are not
            selected are unchanged.
        """
        return self.apply(data, self.resolve_parameters(data, randomize, params))


def field_generator(seed: int, device: torch.device) -> torch.Generator:
    """Return a generator on ``device`` seeded with ``seed``.

    Transforms draw one such seed per call and rebuild the generator for every key, which is how
    all keys of a sample receive the very same random field.
    """
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    return generator


def apply_to_selected(
    data: Tensor,
    selected: Tensor,
    transform: Callable[[Tensor, Tensor], Tensor],
    unselected: Tensor | None = None,
) -> Tensor:
    """Apply ``transform`` to the selected samples of a batch and leave the others untouched.

    Parameters
    ----------
    data : Tensor
        Batch, first dimension B.
    selected : Tensor
        Boolean CPU tensor of shape (B,).
    transform : Callable[[Tensor, Tensor], Tensor]
        Called once as ``transform(sub_batch, index)`` with the selected samples and their CPU
        indices (to pick per-sample parameters); returns the transformed sub-batch.
    unselected : Tensor | None
        What the samples that are not selected become, when that is not ``data`` itself (for
        example ``data`` center-cropped to the output size of the transform).

    Returns
    -------
    Tensor
        ``unselected`` (default ``data``) itself when no sample is selected, otherwise a new tensor.
    """
    check_drawn_batch_size(selected.shape[0], data)
    unselected = data if unselected is None else unselected
    index = selected.nonzero().squeeze(1)
    if index.numel() == 0:
        return unselected
    if index.numel() == data.shape[0]:
        return transform(data, index)
    device_index = index.to(data.device)
    out = unselected.clone()
    out[device_index] = transform(data[device_index], index).to(out.dtype)
    return out


def check_drawn_batch_size(drawn: int, data: Tensor) -> None:
    """Raise ValueError unless parameters drawn for ``drawn`` samples fit the batch ``data``."""
    if drawn != data.shape[0]:
        raise ValueError(
            f"the random parameters were drawn for a batch of {drawn} samples, "
            f"but the data has batch size {data.shape[0]}; call with randomize=True"
        )


def check_batch_shape(shape: Sequence[int], transform: object, ndims: tuple[int, ...] = (5,)) -> None:
    """Raise ValueError, naming the accepted layouts and the shape received, unless ``len(shape)`` is in ``ndims``."""
    if len(shape) not in ndims:
        expected = " or ".join(_BATCH_LAYOUTS[n] for n in ndims)
        raise ValueError(f"{type(transform).__name__} expects a batch shaped {expected}, got shape {tuple(shape)}")


def check_probability(prob: float, name: str = "prob") -> float:
    """Return ``prob`` as a float, or raise ValueError if it is not in [0, 1]."""
    if not isinstance(prob, Real) or not 0.0 <= prob <= 1.0:
        raise ValueError(f"{name} must be a number in [0, 1], got {prob!r}")
    return float(prob)


def check_kept_dtype(dtype: DTypeLike, transform: str) -> None:
    """Refuse an output ``dtype`` other than MONAI's default float32 (or None) for a transform that keeps its input's.

    The reference's batched transforms accepted MONAI's ``dtype`` and ignored it; configs that write
    the default keep loading.

    Parameters
    ----------
    dtype : DTypeLike
        The ``dtype`` argument given to the transform.
    transform : str
        The transform's name, for the message.

    Raises
    ------
    ValueError
        If ``dtype`` is neither None nor float32.
    """
    if isinstance(dtype, torch.dtype):
        dtype = str(dtype).removeprefix("torch.")
    try:
        kept = dtype is None or np.dtype(dtype) == np.float32
    except TypeError:
        kept = False
    if not kept:
        raise ValueError(
            f"{transform} keeps its input's floating-point dtype: dtype={dtype!r} is not supported (only the "
            "default float32, or None, is accepted, so that reference configs load); cast the data to the dtype "
            "you need before this transform."
        )


def check_interval(value: Sequence[float], name: str) -> tuple[float, float]:
    """Return a ``(min, max)`` pair as sorted floats, or raise ValueError naming the valid form."""
    if (
        isinstance(value, (str, bytes))
        or not isinstance(value, Sequence)
        or len(value) != 2
        or not all(isinstance(v, Real) for v in value)
    ):
        raise ValueError(f"{name} must be a (min, max) pair of numbers, got {value!r}")
    low, high = sorted(float(v) for v in value)
    return low, high
