"""Projection head shared by the contrastive encoders."""

from torch import nn


def projection_mlp(in_dims: int, hidden_dims: int, out_dims: int) -> nn.Sequential:
    """Build the contrastive projection head ``Linear -> BatchNorm1d -> ReLU -> Linear -> BatchNorm1d``.

    Parameters
    ----------
    in_dims : int
        Embedding size entering the head.
    hidden_dims : int
        Hidden width.
    out_dims : int
        Projection size.

    Returns
    -------
    nn.Sequential
        Modules indexed 0-4, whose indices are the checkpoint keys ``projection.{0,1,3,4}``.
    """
    return nn.Sequential(
        nn.Linear(in_dims, hidden_dims),
        nn.BatchNorm1d(hidden_dims),
        nn.ReLU(),
        nn.Linear(hidden_dims, out_dims),
        nn.BatchNorm1d(out_dims),
    )
