"""Gathering rows across DDP ranks, shared by ContrastiveModule and NTXentHCL."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["gather_rows", "world_size"]


def world_size() -> int:
    """Return the size of the default process group (1 without ``torch.distributed``)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size()
    return 1


def gather_rows(rows: Tensor) -> Tensor:
    """Concatenate every rank's rows in rank order; gradients flow back to each rank's own rows.

    Ranks may hold different numbers of rows (e.g. the last batch of an epoch). Every rank
    must call this, with tensors of the same trailing shape and dtype.

    Parameters
    ----------
    rows : Tensor
        This rank's rows, ``(N_rank, ...)``.

    Returns
    -------
    Tensor
        ``(sum of N_rank, ...)``: rank 0's rows first.
    """
    from torch.distributed.nn.functional import all_gather

    count = torch.tensor([rows.shape[0]], device=rows.device)
    counts = [torch.zeros_like(count) for _ in range(world_size())]
    torch.distributed.all_gather(counts, count)
    sizes = [int(size) for size in counts]
    padding = (0, 0) * (rows.dim() - 1) + (0, max(sizes) - rows.shape[0])
    gathered = all_gather(torch.nn.functional.pad(rows, padding))
    return torch.cat([part[:size] for part, size in zip(gathered, sizes, strict=True)])
