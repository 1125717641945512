"""Batched reads of cell patches from many FOVs into reused host arrays: the one read path of the triplet datasets."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from torch import Tensor

from viscy_data._optional import import_optional
from viscy_data.ome_compat import TensorstoreCache, array_store_path
from viscy_data.patch_buffers import PatchBuffers
from viscy_data.read_errors import naming_read_errors

if TYPE_CHECKING:
    from iohub.ngff import ImageArray

__all__ = ["MISSING_CHANNEL", "PatchLocations", "PatchReader"]

MISSING_CHANNEL = -1
"""Marks, in a FOV's channel map, an output channel that the FOV does not have (read as zeros)."""


class PatchLocations(NamedTuple):
    """Where the patches of one batch key are: per patch, its FOV, time point and YX centre.

    Attributes
    ----------
    fov : numpy.ndarray
        Index of each patch's FOV in the reader's ``images``.
    t : numpy.ndarray
        Time point of each patch.
    y, x : numpy.ndarray
        Centre of each patch; the patch spans ``[y - h, y + h)`` with ``h`` half the read size.
    """

    fov: np.ndarray
    t: np.ndarray
    y: np.ndarray
    x: np.ndarray


class PatchReader:
    """Read ``(B, C, Z, Y, X)`` batches of patches around cells, all keys of a batch in one tensorstore batch.

    Each patch is copied by tensorstore straight into its slot of one batch array per key (one
    write per byte), taken from a pool of host arrays reused once no batch uses them
    (:class:`~viscy_data.patch_buffers.PatchBuffers`; page-locked with ``pin_memory`` when CUDA is
    available). Chunks shared by several patches of a batch are read once. Output channels a FOV
    lacks (:data:`MISSING_CHANNEL` in its channel map) are zeroed explicitly, since the array
    may hold an earlier batch. A failed read raises
    :class:`~viscy_data.read_errors.ArrayReadError` naming its store, FOV and time point.

    Stores are opened once per (store path, FOV) and shared by the loader's threads; a pickled
    reader (a dataset sent to a worker process) reopens what it needs.

    Parameters
    ----------
    images : Sequence[ImageArray]
        The image array (``"0"``, ``(T, C, Z, Y, X)``) of each FOV, opened with iohub.
    channel_maps : Sequence[Sequence[int]]
        Per FOV, the source channel of each output channel, or :data:`MISSING_CHANNEL`; every map
        has the same length, the number of output channels.
    z_range : slice
        Z slices to read (start and stop set).
    yx_patch_size : tuple[int, int]
        YX size read around each centre.
    cache_pool_bytes : int
        Tensorstore chunk cache shared by all stores; 0 disables it.
    pin_memory : bool
        Read into page-locked host memory when CUDA is available.

    Notes
    -----
    Batches have one dtype: the FOVs' common dtype, or float32 (each store cast on read) when
    they differ.
    """

    def __init__(
        self,
        images: Sequence[ImageArray],
        channel_maps: Sequence[Sequence[int]],
        z_range: slice,
        yx_patch_size: tuple[int, int],
        cache_pool_bytes: int = 0,
        pin_memory: bool = False,
    ) -> None:
        import_optional("tensorstore", extra="triplet", feature="PatchReader")
        if len(images) != len(channel_maps):
            raise ValueError(f"{len(images)} images but {len(channel_maps)} channel maps.")
        if not images:
            raise ValueError("PatchReader needs at least one image.")
        n_channels = {len(channel_map) for channel_map in channel_maps}
        if len(n_channels) != 1:
            raise ValueError(f"Channel maps of lengths {sorted(n_channels)}; every FOV maps the same channels.")
        self.images = list(images)
        self.n_channels = n_channels.pop()
        self.z_range = z_range
        self.yx_patch_size = (int(yx_patch_size[0]), int(yx_patch_size[1]))
        self.buffers = PatchBuffers(pin_memory=pin_memory)
        self._tensorstores = TensorstoreCache(cache_pool_bytes)
        self._store_keys: list[Hashable] = [str(array_store_path(image)) for image in self.images]
        maps = [tuple(int(channel) for channel in channel_map) for channel_map in channel_maps]
        distinct = sorted(set(maps))
        self._fov_map = np.array([distinct.index(channel_map) for channel_map in maps], dtype=np.int64)
        self._channel_runs = [channel_runs(channel_map) for channel_map in distinct]
        self._missing = [
            [channel for channel, source in enumerate(channel_map) if source == MISSING_CHANNEL]
            for channel_map in distinct
        ]
        dtypes = {np.dtype(image.dtype) for image in self.images}
        self.dtype = dtypes.pop() if len(dtypes) == 1 else np.dtype(np.float32)

    def _store(self, fov: int) -> Any:
        """Return the FOV's tensorstore, cast to the batch dtype."""
        store = self._tensorstores.get(self._store_keys[fov], self.images[fov])
        if store.dtype.numpy_dtype != self.dtype:
            import tensorstore as ts

            store = ts.cast(store, self.dtype)
        return store

    def read(self, patch_sets: Sequence[PatchLocations]) -> list[Tensor]:
        """Read one batch array per set of locations.

        Parameters
        ----------
        patch_sets : Sequence[PatchLocations]
            The patches of each key of the batch (anchor, positive, ...).

        Returns
        -------
        list[torch.Tensor]
            ``(B, C, Z, Y, X)`` per set, sharing memory with a pooled host array.

        Raises
        ------
        viscy_data.read_errors.ArrayReadError
            If a read fails; the message names the store, FOV and time point.
        """
        import tensorstore as ts

        half_y, half_x = self.yx_patch_size[0] // 2, self.yx_patch_size[1] // 2
        z_size = len(range(*self.z_range.indices(self.images[0].shape[2])))
        shape = (self.n_channels, z_size, 2 * half_y, 2 * half_x)
        batches, reads = [], []
        with ts.Batch() as read_batch:  # lets tensorstore read each chunk once for the whole batch
            for patches in patch_sets:
                batch, tensor = self.buffers.batch((len(patches.fov), *shape), self.dtype)
                destination = ts.array(batch, copy=False, write=True)
                for slot, (fov, t, y, x) in enumerate(zip(*(column.tolist() for column in patches), strict=True)):
                    channel_map = self._fov_map[fov]
                    if self._missing[channel_map]:
                        batch[slot, self._missing[channel_map]] = 0
                    store = self._store(fov)
                    region = (slice(y - half_y, y + half_y), slice(x - half_x, x + half_x))
                    for output, source in self._channel_runs[channel_map]:
                        future = destination[slot, output].write(
                            store[(t, source, self.z_range, *region)], batch=read_batch
                        )
                        reads.append((fov, t, future))
                batches.append(tensor)
        for fov, t, future in reads:
            with naming_read_errors(self.images[fov], time_point=t):
                future.result()
        return batches


def channel_runs(channel_map: Sequence[int]) -> list[tuple[slice, slice]]:
    """Split an output-to-source channel map into runs read with one slice each, skipping missing channels.

    Parameters
    ----------
    channel_map : Sequence[int]
        Source channel of each output channel, or :data:`MISSING_CHANNEL`.

    Returns
    -------
    list[tuple[slice, slice]]
        ``(output channels, source channels)`` per run: ``[0, 1]`` is one run
        ``(slice(0, 2), slice(0, 2))``; ``[0, 2]`` two; ``[MISSING_CHANNEL, 3]`` one,
        ``(slice(1, 2), slice(3, 4))``.
    """
    runs: list[tuple[slice, slice]] = []
    for channel, source in enumerate(channel_map):
        if source == MISSING_CHANNEL:
            continue
        if runs and runs[-1][0].stop == channel and runs[-1][1].stop == source:
            output, sources = runs[-1]
            runs[-1] = (slice(output.start, channel + 1), slice(sources.start, source + 1))
        else:
            runs.append((slice(channel, channel + 1), slice(source, source + 1)))
    return runs
