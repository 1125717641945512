"""Interactive explorer of cell embeddings: a PCA scatter plot with image thumbnails of the cells.

Needs ``pip install 'viscy-utils[viz,eval,anndata]'`` (dash, plotly, pillow; scikit-learn;
anndata).
"""

from __future__ import annotations

import base64
import io
import logging
import pickle
import socket
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from viscy_data.ome_compat import open_ome_zarr
from viscy_utils._optional import import_optional
from viscy_utils.evaluation._embeddings import embedding_obs, require_columns
from viscy_utils.evaluation.dimensionality_reduction import compute_pca

__all__ = ["EmbeddingVisualizationApp", "find_free_port", "load_embeddings"]

_logger = logging.getLogger(__name__)

LABEL_FREE_CHANNEL_KEYWORDS = ("phase", "dic", "bf", "brightfield")
"""Channels whose name contains one of these show the middle Z slice; others a max projection."""

PORT_RANGE = range(8050, 8071)
"""Ports :meth:`EmbeddingVisualizationApp.run` tries, in order."""

CLUSTER_COLUMNS = ["cluster_id", "cluster_name", "track_id", "time", "fov_name", "cluster_size"]


def load_embeddings(features_path: str | Path) -> Any:
    """Open embeddings written by the EmbeddingWriter (AnnData zarr) or in the legacy xarray format.

    Parameters
    ----------
    features_path : str or Path
        The zarr store.

    Returns
    -------
    AnnData or xarray.Dataset
        AnnData when the store has an ``obs`` group, the legacy dataset otherwise.
    """
    from viscy_utils.callbacks.embedding_writer import read_embedding_dataset

    features_path = Path(features_path)
    if (features_path / "obs").exists():
        anndata = import_optional("anndata", extra="anndata")
        return anndata.read_zarr(features_path)
    return read_embedding_dataset(features_path).reset_index("sample")


def find_free_port(ports: Sequence[int] = PORT_RANGE, host: str = "127.0.0.1") -> int:
    """Return the first port of ``ports`` that can be bound on ``host``.

    Raises
    ------
    RuntimeError
        If every port is taken.
    """
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((host, port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"No free port among {list(ports)}.")


def _encode_jpeg(image: np.ndarray) -> str:
    """Rescale a 2-D image to 8 bits and return it as a base64 JPEG."""
    pil = import_optional("PIL.Image", extra="viz")
    low, high = np.percentile(image, (1, 99)) if image.size else (0.0, 0.0)
    scaled = np.zeros(image.shape, dtype=np.uint8)
    if high > low:
        scaled = (np.clip((image - low) / (high - low), 0, 1) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    pil.fromarray(scaled).save(buffer, format="JPEG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _patch_start(center: float, half: int, size: int) -> int:
    """First pixel of a ``2 * half`` patch around ``center``, shifted to stay inside ``[0, size)``."""
    return min(max(round(center) - half, 0), max(size - 2 * half, 0))


class EmbeddingVisualizationApp:
    """Explore embeddings of selected tracks: PCA scatter plot, thumbnails on selection, clusters to CSV.

    Parameters
    ----------
    data_path : str or Path
        HCS OME-Zarr plate the embeddings were computed from.
    tracks_path : str or Path
        Root of the tracks CSVs (``<row>/<col>/<fov>/*.csv`` with ``track_id, t, y, x``).
    features_path : str or Path
        Embeddings (AnnData zarr or legacy xarray).
    channels_to_display : sequence of str
        Channels shown as thumbnails.
    fov_tracks : Mapping[str, list of int or "all"]
        Tracks to show per FOV.
    z_range : tuple of int
        Z slices ``[start, stop)`` read for thumbnails.
    yx_patch_size : tuple of int
        Thumbnail size in pixels.
    num_PC_components : int
        Principal components computed for the scatter plot.
    cache_path : str or Path, optional
        Pickle file of preloaded thumbnails.
    num_loading_workers : int
        Threads reading thumbnails.
    output_dir : str or Path, optional
        Where cluster CSVs go (default: current directory).

    Raises
    ------
    ValueError
        For unknown channels or FOVs (the message lists those present), or a bad ``fov_tracks`` value.
    """

    def __init__(
        self,
        data_path: str | Path,
        tracks_path: str | Path,
        features_path: str | Path,
        channels_to_display: Sequence[str],
        fov_tracks: Mapping[str, Sequence[int] | Literal["all"]],
        z_range: tuple[int, int] = (0, 1),
        yx_patch_size: tuple[int, int] = (128, 128),
        num_PC_components: int = 3,
        cache_path: str | Path | None = None,
        num_loading_workers: int = 16,
        output_dir: str | Path | None = None,
    ) -> None:
        for fov, tracks in fov_tracks.items():
            if tracks != "all" and not (isinstance(tracks, Sequence) and not isinstance(tracks, str)):
                raise ValueError(f"fov_tracks[{fov!r}] must be a list of track ids or 'all', got {tracks!r}.")
        self.data_path = Path(data_path)
        self.tracks_path = Path(tracks_path)
        self.features_path = Path(features_path)
        self.channels_to_display = list(channels_to_display)
        self.fov_tracks = {str(fov).strip("/"): tracks for fov, tracks in fov_tracks.items()}
        self.z_range = tuple(z_range)
        self.yx_patch_size = tuple(yx_patch_size)
        self.num_PC_components = num_PC_components
        self.cache_path = Path(cache_path) if cache_path is not None else None
        self.num_loading_workers = num_loading_workers
        self.output_dir = Path(output_dir) if output_dir is not None else Path.cwd()
        with open_ome_zarr(self.data_path, layout="hcs", mode="r") as plate:
            present_channels = list(plate.channel_names)
            present_fovs = [name for name, _ in plate.positions()]
        missing = [c for c in self.channels_to_display if c not in present_channels]
        if missing:
            raise ValueError(f"Channels {missing} not found; channels present: {present_channels}.")
        unknown = [fov for fov in self.fov_tracks if fov not in present_fovs]
        if unknown:
            raise ValueError(f"FOVs {unknown} not found; FOVs present: {present_fovs}.")
        self.embeddings = load_embeddings(self.features_path)
        self.table = self._select_cells()
        self.images: dict[tuple[str, int, int], dict[str, str]] = {}
        self.clusters: list[dict[str, Any]] = []
        self.app: Any = None

    def _select_cells(self) -> pd.DataFrame:
        """Tracking columns and principal components of the cells of the selected tracks."""
        obs = embedding_obs(self.embeddings)
        require_columns(obs, ["fov_name", "track_id", "t"])
        _, pca_df = compute_pca(self.embeddings, n_components=self.num_PC_components)
        table = obs[["fov_name", "track_id", "t"]].copy()
        table["fov_name"] = table["fov_name"].astype(str).str.strip("/")
        for column in [c for c in pca_df.columns if c.startswith("PC")]:
            table[column] = pca_df[column].to_numpy()
        keep = np.zeros(len(table), dtype=bool)
        for fov, tracks in self.fov_tracks.items():
            in_fov = table["fov_name"].to_numpy() == fov
            keep |= in_fov if tracks == "all" else in_fov & table["track_id"].isin(list(tracks)).to_numpy()
        if not keep.any():
            raise ValueError(f"No embedding belongs to the selected tracks {self.fov_tracks}.")
        return table[keep].reset_index(drop=True)

    def _track_positions(self, fov: str) -> pd.DataFrame:
        files = sorted((self.tracks_path / fov).glob("*.csv"))
        if len(files) != 1:
            raise FileNotFoundError(f"Expected one tracks CSV in {self.tracks_path / fov}, found {len(files)}.")
        tracks = pd.read_csv(files[0])
        require_columns(tracks, ["track_id", "t", "y", "x"], what=f"tracks {files[0]}")
        return tracks

    def _thumbnails(self, fov: str, rows: pd.DataFrame) -> dict[tuple[str, int, int], dict[str, str]]:
        """Read one FOV's cell patches and encode them, per channel."""
        tracks = self._track_positions(fov).set_index(["track_id", "t"])
        half_y, half_x = self.yx_patch_size[0] // 2, self.yx_patch_size[1] // 2
        thumbnails = {}
        with open_ome_zarr(self.data_path, layout="hcs", mode="r") as plate:
            position = plate[fov]
            channel_index = {name: i for i, name in enumerate(position.channel_names)}
            image = position["0"]
            size_y, size_x = image.shape[-2:]
            for track_id, t in rows[["track_id", "t"]].itertuples(index=False):
                y, x = tracks.loc[(track_id, t), ["y", "x"]]
                y0 = _patch_start(y, half_y, size_y)
                x0 = _patch_start(x, half_x, size_x)
                window = (slice(*self.z_range), slice(y0, y0 + 2 * half_y), slice(x0, x0 + 2 * half_x))
                encoded = {}
                for channel in self.channels_to_display:
                    stack = np.asarray(image[(t, channel_index[channel], *window)], dtype=np.float32)
                    label_free = any(key in channel.lower() for key in LABEL_FREE_CHANNEL_KEYWORDS)
                    plane = stack[len(stack) // 2] if label_free else stack.max(axis=0)
                    encoded[channel] = _encode_jpeg(plane)
                thumbnails[(fov, int(track_id), int(t))] = encoded
        return thumbnails

    def preload_images(self) -> None:
        """Read and encode the thumbnails of every selected cell (from the cache when it matches)."""
        if self.cache_path is not None and self.load_cache():
            return
        groups = list(self.table.groupby("fov_name"))
        with ThreadPoolExecutor(max_workers=self.num_loading_workers) as executor:
            futures = [executor.submit(self._thumbnails, fov, rows) for fov, rows in groups]
            for future in tqdm(futures, desc="Loading thumbnails", unit="FOV"):
                self.images.update(future.result())
        if self.cache_path is not None:
            self.save_cache()

    def _cache_metadata(self) -> dict[str, Any]:
        return {
            "data_path": str(self.data_path),
            "features_path": str(self.features_path),
            "channels_to_display": self.channels_to_display,
            "fov_tracks": {fov: tracks if tracks == "all" else list(tracks) for fov, tracks in self.fov_tracks.items()},
            "z_range": list(self.z_range),
            "yx_patch_size": list(self.yx_patch_size),
        }

    def save_cache(self) -> None:
        """Pickle the thumbnails with the settings that produced them to ``cache_path``."""
        if self.cache_path is None:
            raise ValueError("No cache_path was given.")
        self.cache_path.parent.mkdir(parents=True, exist_ok=True)
        with self.cache_path.open("wb") as file:
            pickle.dump({"metadata": self._cache_metadata(), "images": self.images}, file)

    def load_cache(self) -> bool:
        """Load thumbnails from ``cache_path`` when it exists and was made with the same settings.

        Returns
        -------
        bool
            Whether the cache was used.
        """
        if self.cache_path is None or not self.cache_path.exists():
            return False
        with self.cache_path.open("rb") as file:
            cached = pickle.load(file)
        if cached.get("metadata") != self._cache_metadata():
            _logger.warning("Ignoring thumbnail cache %s: it was made with other settings.", self.cache_path)
            return False
        self.images = cached["images"]
        return True

    def figure(self, x_axis: str = "PC1", y_axis: str = "PC2", color_by: str = "track_id") -> Any:
        """Scatter plot of the selected cells (plotly figure); ``customdata`` holds each point's row."""
        express = import_optional("plotly.express", extra="viz")
        table = self.table.assign(row=np.arange(len(self.table)), track_id=self.table["track_id"].astype(str))
        return express.scatter(
            table,
            x=x_axis,
            y=y_axis,
            color=color_by,
            custom_data=["row"],
            hover_data=["fov_name", "track_id", "t"],
        )

    def thumbnails_for(self, rows: Sequence[int]) -> list[dict[str, Any]]:
        """Cells and encoded thumbnails of table rows (for the selected points)."""
        cells = []
        for row in rows:
            fov, track_id, t = self.table.loc[row, ["fov_name", "track_id", "t"]]
            cells.append(
                {
                    "fov_name": fov,
                    "track_id": int(track_id),
                    "t": int(t),
                    "images": self.images.get((fov, int(track_id), int(t)), {}),
                }
            )
        return cells

    def add_cluster(self, rows: Sequence[int], name: str | None = None) -> int:
        """Record table rows as a named cluster and return its id."""
        if not rows:
            raise ValueError("A cluster needs at least one selected cell.")
        cluster_id = len(self.clusters)
        self.clusters.append(
            {"cluster_id": cluster_id, "cluster_name": name or f"cluster_{cluster_id}", "rows": list(rows)}
        )
        return cluster_id

    def save_clusters_to_csv(self, output_path: str | Path | None = None, overwrite: bool = False) -> Path:
        """Write the clusters, one row per cell.

        Columns: ``cluster_id, cluster_name, track_id, time, fov_name, cluster_size``.

        Raises
        ------
        FileExistsError
            If the file exists and ``overwrite`` is False.
        """
        path = Path(output_path) if output_path is not None else self.output_dir / "clusters.csv"
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists; pass overwrite=True to replace it.")
        records = [
            {
                "cluster_id": cluster["cluster_id"],
                "cluster_name": cluster["cluster_name"],
                "track_id": int(self.table.loc[row, "track_id"]),
                "time": int(self.table.loc[row, "t"]),
                "fov_name": self.table.loc[row, "fov_name"],
                "cluster_size": len(cluster["rows"]),
            }
            for cluster in self.clusters
            for row in cluster["rows"]
        ]
        path.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(records, columns=CLUSTER_COLUMNS).to_csv(path, index=False)
        return path

    def build_app(self) -> Any:
        """Create the Dash app: axis and color pickers, the scatter plot, thumbnails and cluster controls."""
        dash = import_optional("dash", extra="viz")
        html, dcc = dash.html, dash.dcc
        components = [c for c in self.table.columns if c.startswith("PC")]
        app = dash.Dash(__name__)
        app.layout = html.Div(
            [
                html.Div(
                    [
                        dcc.Dropdown(components, "PC1", id="x-axis", clearable=False),
                        dcc.Dropdown(
                            components, components[1] if len(components) > 1 else "PC1", id="y-axis", clearable=False
                        ),
                        dcc.Dropdown(["track_id", "t", "fov_name"], "track_id", id="color-by", clearable=False),
                    ]
                ),
                dcc.Graph(id="scatter", figure=self.figure()),
                dcc.Input(id="cluster-name", type="text", placeholder="cluster name"),
                html.Button("Add selection as cluster", id="add-cluster"),
                html.Button("Save clusters", id="save-clusters"),
                html.Div(id="status"),
                html.Div(id="thumbnails"),
            ]
        )

        @app.callback(
            dash.Output("scatter", "figure"),
            dash.Input("x-axis", "value"),
            dash.Input("y-axis", "value"),
            dash.Input("color-by", "value"),
        )
        def _update_figure(x_axis: str, y_axis: str, color_by: str) -> Any:
            return self.figure(x_axis, y_axis, color_by)

        @app.callback(dash.Output("thumbnails", "children"), dash.Input("scatter", "selectedData"))
        def _show_thumbnails(selected: dict | None) -> list:
            rows = [point["customdata"][0] for point in (selected or {}).get("points", [])][:50]
            return [
                html.Div(
                    [html.Span(f"{cell['fov_name']} track {cell['track_id']} t={cell['t']}")]
                    + [
                        html.Img(src=f"data:image/jpeg;base64,{data}", title=channel)
                        for channel, data in cell["images"].items()
                    ]
                )
                for cell in self.thumbnails_for(rows)
            ]

        @app.callback(
            dash.Output("status", "children"),
            dash.Input("add-cluster", "n_clicks"),
            dash.Input("save-clusters", "n_clicks"),
            dash.State("scatter", "selectedData"),
            dash.State("cluster-name", "value"),
            prevent_initial_call=True,
        )
        def _clusters(_add: int | None, _save: int | None, selected: dict | None, name: str | None) -> str:
            if dash.ctx.triggered_id == "save-clusters":
                return f"Saved {self.save_clusters_to_csv(overwrite=True)}"
            rows = [point["customdata"][0] for point in (selected or {}).get("points", [])]
            if not rows:
                return "Select cells first (box or lasso)."
            cluster_id = self.add_cluster(rows, name)
            return f"Cluster {cluster_id} has {len(rows)} cells."

        self.app = app
        return app

    def run(self, debug: bool = False, port: int | None = None) -> None:
        """Preload thumbnails, build the app and serve it on ``port`` (the first free one of 8050-8070 by default)."""
        if not self.images:
            self.preload_images()
        app = self.app or self.build_app()
        port = port if port is not None else find_free_port()
        _logger.info("Embedding explorer on http://127.0.0.1:%d", port)
        app.run(debug=debug, port=port)
