"""PatchBuffers: arrays reused only when no batch uses them."""

import pickle
import weakref

import numpy as np
import pytest
import torch

from viscy_data.patch_buffers import PatchBuffers

SHAPE = (4, 2, 3, 8, 8)


def _filled(buffers: PatchBuffers, value: float) -> tuple[np.ndarray, torch.Tensor]:
    array, batch = buffers.batch(SHAPE, np.float32)
    array[...] = value
    return array, batch


def test_a_held_batch_is_never_rewritten_however_it_is_held():
    buffers = PatchBuffers()
    _, held = _filled(buffers, 1.0)
    _, other = _filled(buffers, 2.0)
    alias = other[1:3].permute(0, 2, 1, 3, 4).numpy()  # only a numpy alias of a view is kept
    del other
    for value in range(3, 9):
        _filled(buffers, float(value))  # each dropped at once
    assert torch.all(held == 1.0)
    assert np.all(alias == 2.0)
    assert len(buffers) == 3  # the two held, plus one reused for all the others


def test_a_dropped_batch_gives_its_array_to_the_next_one():
    buffers = PatchBuffers()
    array, batch = _filled(buffers, 1.0)
    first = weakref.ref(array)  # holding the array itself would keep it in use
    del array, batch
    again, _ = _filled(buffers, 2.0)
    assert again is first()
    assert len(buffers) == 1


def test_at_most_spare_unused_arrays_are_kept_per_shape():
    buffers = PatchBuffers(spare=1)
    held = [_filled(buffers, float(i))[1] for i in range(5)]
    assert len(buffers) == 5
    del held
    _filled(buffers, 0.0)
    assert len(buffers) == 2  # the one handed out and one spare
    buffers.batch((1, 2), np.int16)
    assert len(buffers) == 3  # shapes and dtypes have their own arrays
    with pytest.raises(ValueError, match="spare must be >= 0"):
        PatchBuffers(spare=-1)


def test_a_pickled_pool_arrives_empty_with_its_settings():
    buffers = PatchBuffers(pin_memory=True, spare=3)
    _filled(buffers, 1.0)
    copy = pickle.loads(pickle.dumps(buffers))
    assert len(copy) == 0
    assert (copy.pin_memory, copy.spare) == (True, 3)


@pytest.mark.gpu
def test_pinned_batches_are_pinned_so_the_loaders_pinning_copies_nothing():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    _, batch = PatchBuffers(pin_memory=True).batch(SHAPE, np.float32)
    assert batch.is_pinned()
    assert batch.pin_memory().data_ptr() == batch.data_ptr()
