"""Splitting of a batch into a list of samples."""

from __future__ import annotations

from typing import Any, ClassVar

from monai.data import decollate_batch
from monai.transforms import Transform

__all__ = ["Decollate"]


class Decollate(Transform):
    """Split a batch (a (B, ...) tensor or a dict of them) into a list of B samples (MONAI ``decollate_batch``).

    Parameters
    ----------
    detach : bool
        Detach tensors and turn 0-d tensors into Python numbers. Default True.
    pad_batch : bool
        Pad shorter batch entries so that every sample has all entries. Default True.
    fill_value : Any
        Padding value used with ``pad_batch``. Default None.
    """

    runs_on_batches: ClassVar[bool] = True

    def __init__(self, detach: bool = True, pad_batch: bool = True, fill_value: Any = None) -> None:
        self.detach = detach
        self.pad_batch = pad_batch
        self.fill_value = fill_value

    def __call__(self, data: Any) -> list[Any]:
        """Decollate ``data``.

        Parameters
        ----------
        data : Any
            A batch.

        Returns
        -------
        list[Any]
            The samples.
        """
        return decollate_batch(data, detach=self.detach, pad=self.pad_batch, fill_value=self.fill_value)
