"""Host arrays that batched patch reads write into, reused once no batch uses them."""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

__all__ = ["PatchBuffers"]


@dataclass(eq=False)
class _Slot:
    """One host array, its pinned torch owner (if pinned) and its reference count when nothing uses it."""

    array: np.ndarray
    owner: Tensor | None
    idle_references: int = 0


def _references(slot: _Slot) -> int:
    """Count the references to the slot's array: its own, this call's, one per live tensor storage sharing it."""
    return sys.getrefcount(slot.array)


class PatchBuffers:
    """Preallocated host batch arrays for patch reads: no allocation and no page faults per batch.

    A reader asks for a batch of a shape and dtype (:meth:`batch`) and gets an array to write into
    (tensorstore writes each patch straight into its slot) and a tensor sharing its memory, which it
    returns as the batch. The array is handed out again only when nothing uses that memory any more:
    every tensor made from it, every view of those tensors and every numpy alias of them shares one
    torch storage, which holds a reference to the array until the last of them is gone, so the array's
    reference count says whether any can still be read. A batch is therefore never rewritten while the
    consumer (the training step, a callback, a user holding it) can still use it, however long it is
    kept; the pool then simply holds one more array. Up to ``spare`` unused arrays per shape are kept
    for the next batches (the default, 6, holds two batches of anchor, positive and negative: what the
    loader's read-ahead takes back and forth); more are released.

    With ``pin_memory`` (and CUDA available) the arrays are page-locked, so ``Tensor.pin_memory()``
    (the loader's pinning) returns the batch as it is instead of copying it, and the copy to the
    device can run asynchronously. On a machine without CUDA they are ordinary memory.

    Thread-safe. A pickled pool (a dataset sent to a worker process) arrives empty.

    Parameters
    ----------
    pin_memory : bool
        Page-lock the arrays when CUDA is available.
    spare : int
        Unused arrays kept per (shape, dtype), default 6.

    Examples
    --------
    >>> buffers = PatchBuffers()
    >>> array, batch = buffers.batch((2, 3), np.float32)
    >>> array[:] = 1.0
    >>> float(batch.sum())
    6.0
    >>> array_again, _ = buffers.batch((2, 3), np.float32)  # `batch` is alive: another array
    >>> array_again is array
    False
    """

    def __init__(self, pin_memory: bool = False, spare: int = 6) -> None:
        if spare < 0:
            raise ValueError(f"spare must be >= 0, got {spare}")
        self.pin_memory = pin_memory
        self.spare = spare
        self._slots: dict[tuple[tuple[int, ...], np.dtype], list[_Slot]] = {}
        self._lock = threading.Lock()

    def __getstate__(self) -> dict:
        return {"pin_memory": self.pin_memory, "spare": self.spare}

    def __setstate__(self, state: dict) -> None:
        self.__init__(**state)

    def batch(self, shape: tuple[int, ...], dtype: np.dtype | type) -> tuple[np.ndarray, Tensor]:
        """Return an array of ``shape`` and ``dtype`` that no live batch uses, and a tensor sharing its memory.

        The array's content is whatever an earlier batch left there: write every element (or zero
        what is not read).

        Parameters
        ----------
        shape : tuple[int, ...]
            Shape of the batch.
        dtype : numpy dtype
            Element type.

        Returns
        -------
        tuple[numpy.ndarray, torch.Tensor]
            The array to write into and the batch tensor (the same memory).
        """
        key = (tuple(int(n) for n in shape), np.dtype(dtype))
        with self._lock:
            slots = self._slots.setdefault(key, [])
            idle = [slot for slot in slots if _references(slot) <= slot.idle_references]
            for extra in idle[self.spare + 1 :]:
                slots.remove(extra)
            slot = idle[0] if idle else self._new_slot(*key)
            if not idle:
                slots.append(slot)
            return slot.array, torch.from_numpy(slot.array)

    def _new_slot(self, shape: tuple[int, ...], dtype: np.dtype) -> _Slot:
        if self.pin_memory and torch.cuda.is_available():
            owner = torch.from_numpy(np.empty(shape, dtype)).pin_memory()
            slot = _Slot(array=owner.numpy(), owner=owner)
        else:
            slot = _Slot(array=np.empty(shape, dtype), owner=None)
        slot.idle_references = _references(slot)
        return slot

    def __len__(self) -> int:
        """Arrays held, in use or not."""
        return sum(len(slots) for slots in self._slots.values())
