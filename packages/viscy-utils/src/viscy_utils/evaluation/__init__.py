"""Evaluation of embeddings: classifiers, reductions, distances, smoothness, metrics and features.

Submodules are imported on demand, so the heavy optional libraries they need (the ``eval``
extra) are only loaded when used. ``load_annotation_anndata`` is available here directly.
"""

from __future__ import annotations

from typing import Any

__all__ = ["load_annotation_anndata"]


def __getattr__(name: str) -> Any:
    if name == "load_annotation_anndata":
        from viscy_utils.evaluation.annotation import load_annotation_anndata

        return load_annotation_anndata
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
