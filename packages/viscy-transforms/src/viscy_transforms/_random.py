"""Random state of the stochastic transforms: torch generators they own, seeded the MONAI way."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from numbers import Real
from typing import Self

import numpy as np
import torch
from monai.transforms import Randomizable
from monai.utils import MAX_SEED
from torch import Tensor

__all__ = [
    "TorchRandomizable",
    "apply_to_selected",
    "check_interval",
    "check_probability",
    "field_generator",
]


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
    if selected.shape != (data.shape[0],):
        raise ValueError(
            f"the random parameters were drawn for a batch of {selected.shape[0]} samples, "
            f"but the data has batch size {data.shape[0]}; call with randomize=True"
        )
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


def check_probability(prob: float, name: str = "prob") -> float:
    """Return ``prob`` as a float, or raise ValueError if it is not in [0, 1]."""
    if not isinstance(prob, Real) or not 0.0 <= prob <= 1.0:
        raise ValueError(f"{name} must be a number in [0, 1], got {prob!r}")
    return float(prob)


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
