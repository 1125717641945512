import threading
import time
import weakref

import numpy as np
import pytest
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, IterableDataset, SequentialSampler

from viscy_data.patch_buffers import PatchBuffers
from viscy_data.thread_loader import ThreadedDataLoader, training_device


class Squares(Dataset):
    """Item ``i`` is ``i**2``; reading ``fail_at`` raises."""

    def __init__(self, n=20, fail_at=None):
        self.n = n
        self.fail_at = fail_at

    def __len__(self):
        return self.n

    def __getitem__(self, index):
        if index == self.fail_at:
            raise OSError(f"cannot read item {index}")
        return torch.tensor(index**2)


class BatchedSquares(Squares):
    def __init__(self, n=20):
        super().__init__(n)
        self.calls = []

    def __getitems__(self, indices):
        self.calls.append(list(indices))
        return {"square": torch.tensor(indices) ** 2}


def _as_lists(loader):
    return [batch.tolist() for batch in loader]


@pytest.mark.parametrize("num_workers", [0, 1, 2])
@pytest.mark.parametrize(
    "settings",
    [
        {"batch_size": 3},
        {"batch_size": 3, "drop_last": True},
        {"batch_size": None},
        {"batch_sampler": BatchSampler(SequentialSampler(range(20)), batch_size=6, drop_last=False)},
    ],
)
def test_same_batches_as_a_torch_loader(num_workers, settings):
    def loader(cls, **extra):
        return cls(Squares(), **settings, **extra)

    threaded = loader(ThreadedDataLoader, num_workers=num_workers)
    assert isinstance(threaded, DataLoader)
    assert len(threaded) == len(loader(DataLoader))
    expected = _as_lists(loader(DataLoader))
    assert _as_lists(threaded) == expected
    assert _as_lists(threaded) == expected, "a second epoch reads the same batches"


def test_shuffle_follows_the_generator():
    def epochs(seed):
        generator = torch.Generator().manual_seed(seed)
        loader = ThreadedDataLoader(Squares(), batch_size=5, shuffle=True, generator=generator)
        return [[value for batch in _as_lists(loader) for value in batch] for _ in range(2)]

    first, second = epochs(3)
    assert sorted(first) == sorted(second) == [i**2 for i in range(20)]
    assert first != second
    assert epochs(3) == [first, second]
    assert epochs(4)[0] != first


@pytest.mark.parametrize("num_workers", [0, 2])
def test_worker_error_is_raised_in_the_caller_after_the_earlier_batches(num_workers):
    loader = ThreadedDataLoader(Squares(fail_at=10), batch_size=4, num_workers=num_workers)
    batches = iter(loader)
    assert [next(batches).tolist(), next(batches).tolist()] == [[0, 1, 4, 9], [16, 25, 36, 49]]
    with pytest.raises(OSError, match="cannot read item 10") as error:
        next(batches)
    assert any(code.co_name == "__getitem__" for code in _frames(error.value.__traceback__))


def _frames(traceback):
    while traceback is not None:
        yield traceback.tb_frame.f_code
        traceback = traceback.tb_next


def test_getitems_reads_whole_batches():
    dataset = BatchedSquares(10)
    batches = list(ThreadedDataLoader(dataset, batch_size=4, num_workers=2, collate_fn=lambda batch: batch))
    assert [batch["square"].tolist() for batch in batches] == [[0, 1, 4, 9], [16, 25, 36, 49], [64, 81]]
    assert sorted(dataset.calls) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_stopping_early_leaves_no_reading_thread():
    class Slow(Squares):
        def __getitem__(self, index):
            time.sleep(0.01)
            return super().__getitem__(index)

    iterator = iter(ThreadedDataLoader(Slow(200), batch_size=2, num_workers=2))
    assert next(iterator).tolist() == [0, 1]
    iterator.close()
    deadline = time.monotonic() + 10
    while any(t.name.startswith("ThreadedDataLoader") for t in threading.enumerate()):
        assert time.monotonic() < deadline, "reading threads still running after the iteration stopped"
        time.sleep(0.05)


def test_lightning_prediction_writers_get_the_indices_of_each_batch():
    """Lightning wraps the batch sampler in an iterator that restarts when iter() is called on it again."""
    from lightning.pytorch import LightningModule, Trainer
    from lightning.pytorch.callbacks import BasePredictionWriter

    written = []

    class Writer(BasePredictionWriter):
        def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx):
            written.append((batch_indices, prediction.tolist()))

    class Identity(LightningModule):
        def predict_step(self, batch, batch_idx):
            return batch

    loader = ThreadedDataLoader(Squares(10), batch_size=4, num_workers=2)
    trainer = Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, callbacks=[Writer("batch")])
    trainer.predict(Identity(), dataloaders=loader, return_predictions=False)
    assert written == [([0, 1, 2, 3], [0, 1, 4, 9]), ([4, 5, 6, 7], [16, 25, 36, 49]), ([8, 9], [64, 81])]


def test_process_worker_options_and_iterable_datasets_are_refused():
    with pytest.raises(ValueError, match="worker_init_fn does not apply"):
        ThreadedDataLoader(Squares(), num_workers=2, worker_init_fn=print)
    with pytest.raises(ValueError, match="multiprocessing_context does not apply"):
        ThreadedDataLoader(Squares(), num_workers=2, multiprocessing_context="spawn")

    class Stream(IterableDataset):
        def __iter__(self):
            return iter(range(3))

    with pytest.raises(TypeError, match="map-style"):
        ThreadedDataLoader(Stream())


def test_persistent_workers_is_refused_and_its_default_accepted(recwarn):
    loader = ThreadedDataLoader(Squares(4), batch_size=2, num_workers=2, persistent_workers=False)
    assert [batch.tolist() for batch in loader] == [[0, 1], [4, 9]]
    assert not recwarn.list
    with pytest.raises(ValueError, match="no worker processes to keep alive; leave persistent_workers False"):
        ThreadedDataLoader(Squares(4), batch_size=2, num_workers=2, persistent_workers=True)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_pin_memory_pins_every_tensor_of_the_batch():
    def collate(batch):
        return {"square": batch["square"], "nested": [batch["square"] + 1, ("kept", batch["square"] * 2)]}

    loader = ThreadedDataLoader(BatchedSquares(6), batch_size=3, num_workers=2, pin_memory=True, collate_fn=collate)
    for batch in loader:
        assert batch["square"].is_pinned()
        assert batch["nested"][0].is_pinned()
        assert batch["nested"][1][0] == "kept"
        assert batch["nested"][1][1].is_pinned()


def test_a_yielded_batch_lives_only_as_long_as_the_consumer_keeps_it():
    """Regression: the loader held the last batch until the next was read, so its arrays could not be reused."""
    loader = ThreadedDataLoader(BatchedSquares(), batch_size=4, num_workers=1, collate_fn=lambda batch: batch)
    batches = iter(loader)
    batch = next(batches)
    first = weakref.ref(batch["square"])
    del batch
    assert first() is None
    assert next(batches)["square"].tolist() == [16, 25, 36, 49]


def test_training_device_is_the_trainers_cuda_device_only():
    from types import SimpleNamespace

    assert training_device(None) is None
    assert training_device(SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device("cpu")))) is None
    cuda = torch.device("cuda", 1)
    assert training_device(SimpleNamespace(strategy=SimpleNamespace(root_device=cuda))) == cuda


def test_copy_to_without_cuda_keeps_batches_on_the_host():
    """The same code runs on a CPU-only machine: copy_to is ignored there, batches equal those of a torch loader."""
    if torch.cuda.is_available():
        pytest.skip("checks the CPU-only path")
    loader = ThreadedDataLoader(Squares(), batch_size=4, num_workers=2, pin_memory=True, copy_to=torch.device("cuda"))
    assert loader.copy_to == torch.device("cuda")
    assert _as_lists(loader) == _as_lists(DataLoader(Squares(), batch_size=4))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_copy_to_cuda_yields_device_batches_equal_to_the_host_reads():
    """Pinned batches are copied on a side stream by the reading threads; consumers see exactly the host values."""

    class Patches(Dataset):
        """Reads into pooled pinned arrays, reused once nothing holds them (as the triplet datasets do)."""

        def __init__(self):
            self.buffers = PatchBuffers(pin_memory=True, spare=1)

        def __len__(self):
            return 64

        def __getitems__(self, indices):
            array, patch = self.buffers.batch((len(indices), 2, 8, 256, 256), np.float32)
            array[:] = np.asarray(indices, dtype=np.float32)[:, None, None, None, None]
            return {"patch": patch}

    device = torch.device("cuda", torch.cuda.current_device())
    loader = ThreadedDataLoader(
        Patches(), batch_size=8, num_workers=2, pin_memory=True, copy_to=device, collate_fn=lambda batch: batch
    )
    held = []
    for number, batch in enumerate(loader):
        assert batch["patch"].device == device
        held.append((number, batch["patch"] * 1))  # a kernel on the current stream, ordered after the copy
    for number, patch in held:
        expected = torch.arange(8 * number, 8 * number + 8, dtype=torch.float32, device=device)
        torch.testing.assert_close(patch.amax(dim=(1, 2, 3, 4)), expected, rtol=0, atol=0)
        torch.testing.assert_close(patch.amin(dim=(1, 2, 3, 4)), expected, rtol=0, atol=0)
