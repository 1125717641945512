"""Explore DynaCLR embeddings interactively: PCA scatter plot with cell thumbnails (Plotly Dash).

Reads the AnnData embeddings store that ``dynaclr predict`` writes (or legacy xarray
embeddings), the plate and its tracks, and serves
:class:`viscy_utils.evaluation.visualization.EmbeddingVisualizationApp`: pick principal
components and a colouring, box- or lasso-select cells to see their thumbnails, save the
selections as clusters (``clusters.csv`` in ``--output-dir``).

Usage, from the repository root, after the README walk-through::

    uv run python applications/dynaclr/examples/embedding_explorer.py            # http://127.0.0.1:8050
    uv run python applications/dynaclr/examples/embedding_explorer.py --fov A/2/0 --fov B/2/1 --port 8060
    uv run python applications/dynaclr/examples/embedding_explorer.py --no-server  # build only, then exit

Needs the ``viz`` extra (``pip install 'dynaclr[viz]'``; installed with the workspace's dev group).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from viscy_data.ome_compat import fov_name, open_ome_zarr
from viscy_utils.evaluation.visualization import EmbeddingVisualizationApp


def plate_fovs(data_path: Path) -> list[str]:
    """FOV names of a plate, e.g. ``["A/1/0", "A/1/1", ...]``."""
    with open_ome_zarr(data_path, layout="hcs", mode="r") as plate:
        return [fov_name(position) for _, position in plate.positions()]


def build_explorer(args: argparse.Namespace) -> EmbeddingVisualizationApp:
    """Create the explorer, read and encode the thumbnails, and build the Dash app (without serving it).

    Parameters
    ----------
    args : argparse.Namespace
        What :func:`parse_args` returns.

    Returns
    -------
    EmbeddingVisualizationApp
        With ``images`` preloaded and ``app`` built.
    """
    fovs = args.fov or plate_fovs(args.data_path)
    print(f"Reading {args.embeddings} and thumbnails of {len(fovs)} FOVs of {args.data_path}", flush=True)
    explorer = EmbeddingVisualizationApp(
        data_path=args.data_path,
        tracks_path=args.tracks_path,
        features_path=args.embeddings,
        channels_to_display=args.channels,
        fov_tracks=dict.fromkeys(fovs, "all"),
        z_range=tuple(args.z_range),
        yx_patch_size=tuple(args.patch_size),
        num_PC_components=args.components,
        cache_path=args.cache,
        num_loading_workers=args.workers,
        output_dir=args.output_dir,
    )
    explorer.preload_images()
    explorer.build_app()
    return explorer


def describe(explorer: EmbeddingVisualizationApp) -> dict[str, Any]:
    """Cells, thumbnails and plotted points of a built explorer.

    Parameters
    ----------
    explorer : EmbeddingVisualizationApp
        A built explorer.

    Returns
    -------
    dict
        ``cells`` (selected embeddings), ``thumbnails`` (cells with images), ``points`` (in
        the scatter plot) and ``fovs``.
    """
    figure = explorer.figure()
    return {
        "cells": len(explorer.table),
        "thumbnails": len(explorer.images),
        "points": sum(len(trace.x) for trace in figure.data),
        "fovs": explorer.table["fov_name"].nunique(),
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-path", type=Path, default=Path("synthetic/plate.zarr"), help="default: %(default)s")
    parser.add_argument("--tracks-path", type=Path, default=Path("synthetic/tracks"), help="default: %(default)s")
    parser.add_argument("--embeddings", type=Path, default=Path("embeddings.zarr"), help="default: %(default)s")
    parser.add_argument("--channels", nargs="+", default=["Phase3D", "RFP"], help="thumbnail channels (%(default)s)")
    parser.add_argument("--fov", action="append", help="FOV to show, e.g. A/1/0, repeated (default: all)")
    parser.add_argument("--z-range", type=int, nargs=2, default=(0, 5), metavar=("START", "STOP"))
    parser.add_argument("--patch-size", type=int, nargs=2, default=(64, 64), metavar=("Y", "X"))
    parser.add_argument("--components", type=int, default=3, help="principal components (%(default)s)")
    parser.add_argument("--cache", type=Path, default=None, help="pickle file caching the thumbnails")
    parser.add_argument("--workers", type=int, default=4, help="thumbnail-reading threads (%(default)s)")
    parser.add_argument("--output-dir", type=Path, default=Path("."), help="where clusters.csv goes (%(default)s)")
    parser.add_argument("--port", type=int, default=None, help="default: the first free port of 8050-8070")
    parser.add_argument("--no-server", action="store_true", help="build the app (thumbnails, figure) and exit")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Build the explorer and serve it (unless ``--no-server``)."""
    args = parse_args(argv)
    explorer = build_explorer(args)
    summary = describe(explorer)
    print(
        f"{summary['cells']} cells of {summary['fovs']} FOVs, {summary['thumbnails']} with thumbnails, "
        f"{summary['points']} points in the scatter plot"
    )
    if not args.no_server:
        explorer.run(port=args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
