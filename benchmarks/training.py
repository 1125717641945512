"""Training throughput of DynaCLR's ContrastiveModule through TripletDataModule, with the step time split.

Builds the model and the data module of ``applications/dynaclr/examples/configs/fit.yml``
(ContrastiveEncoder convnext_tiny, 2 channels, TripletMarginLoss with negatives, its normalizations and
augmentations) at the sizes given here, writes a synthetic plate big enough for the run into a temporary
directory, and fits it with a real ``lightning.pytorch.Trainer`` (``limit_train_batches``, one epoch, no
validation, logger or checkpoints). A callback splits every timed step (after the warm-up steps) into:

- loader wait: from the end of the previous step until the DataLoader hands over the next batch
  (``on_before_batch_transfer``), including Lightning's per-step bookkeeping;
- transfer: ``transfer_batch_to_device``;
- augment: ``on_after_batch_transfer`` (normalization, augmentation and final crop, on the device);
- compute: ``on_train_batch_start`` to ``on_train_batch_end``: forward (anchor, positive, negative),
  backward and optimizer step.

On CUDA the device is synchronized at each of those boundaries, so each part is charged its own device time.
The baseline, measured in the same run, fits the same model on one fixed batch that is already on the device
and augmented (pure compute, no loader); the gap between it and the loader rows is the data path's cost.
"loader share" is loader wait / step time, "data share" adds transfer and augmentation.

    uv run python benchmarks/training.py --quick                  # tiny sizes, a few steps (smoke run)
    uv run python benchmarks/training.py                          # CPU: 5 z, 80x80 -> 64x64, batch 16
    uv run python benchmarks/training.py --num-workers 1 2 4      # compare loader threads
    uv run python benchmarks/training.py --device cuda            # fit.yml size: 30 z, 384x384 -> 160x160, batch 64
    uv run python benchmarks/training.py --device cuda --precision bf16-mixed --channels-last

On CUDA the table also gives the mean GPU utilization over the timed steps (``torch.cuda.utilization()``
when pynvml is installed, else ``nvidia-smi`` polled in a background thread; "n/a" when neither works) and
the peak allocated memory. ``--num-workers`` 0 and 1 both read in one background thread
(``viscy_data.thread_loader.ThreadedDataLoader``), which holds up to 2 read-ahead batches per thread: at the
fit.yml size one batch (anchor, positive, negative: 3 x 64 x 2 x 30 x 384 x 384 float32) is 6.8 GB of host
memory. ``--workdir DIR`` keeps the plate (about 2.5 GB at that size) for the next run.
"""

from __future__ import annotations

import argparse
import functools
import gc
import importlib
import logging
import math
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from lightning.fabric.utilities.apply_func import move_data_to_device
from lightning.pytorch import Callback, LightningModule, Trainer, seed_everything

FIT_CONFIG = Path(__file__).resolve().parents[1] / "applications/dynaclr/examples/configs/fit.yml"
VIEWS = ("anchor", "positive", "negative")
WELLS = {"A/1": "uninfected", "A/2": "infected"}
FOVS_PER_WELL = 2  # 4 FOVs: 3 for training and 1 for validation with the default split_ratio 0.8
N_FRAMES = 4

DEFAULTS = {
    "cpu": {"z": 5, "initial": 80, "final": 64, "batch": 16, "warmup": 2, "steps": 8},
    "cuda": {"z": 30, "initial": 384, "final": 160, "batch": 64, "warmup": 5, "steps": 20},
    "quick": {"z": 5, "initial": 48, "final": 32, "batch": 8, "warmup": 1, "steps": 3},
}


def instantiate(node: Any) -> Any:
    """Build the objects of a LightningCLI ``class_path``/``init_args`` tree."""
    if isinstance(node, list):
        return [instantiate(item) for item in node]
    if isinstance(node, dict) and "class_path" in node:
        module_name, _, class_name = node["class_path"].rpartition(".")
        cls = getattr(importlib.import_module(module_name), class_name)
        return cls(**{key: instantiate(value) for key, value in node.get("init_args", {}).items()})
    if isinstance(node, dict):
        return {key: instantiate(value) for key, value in node.items()}
    return node


@dataclass(frozen=True)
class Sizes:
    """Sizes of one benchmark configuration."""

    z: int
    initial: int
    final: int
    batch: int
    warmup: int
    steps: int

    @property
    def batches(self) -> int:
        """Warm-up plus timed steps."""
        return self.warmup + self.steps


def write_plate(root: Path, sizes: Sizes, channels: list[str], chunk_yx: int | None) -> tuple[Path, Path, str]:
    """Write (or reuse) a synthetic plate with enough valid anchors for ``sizes.batches`` training batches."""
    from viscy_data.synthetic import write_synthetic_plate

    yx = 2 * sizes.initial
    radius = max(4.0, sizes.final / 8)
    train_fovs = math.floor(len(WELLS) * FOVS_PER_WELL * 0.8)
    inside = ((yx - sizes.initial) / (yx - 2 * math.ceil(radius))) ** 2  # cells whose patch is inside the image
    cells = math.ceil(2 * sizes.batches * sizes.batch / (train_fovs * (N_FRAMES - 1) * inside))
    chunks = None if chunk_yx is None else (1, 1, sizes.z, chunk_yx, chunk_yx)
    key = f"z{sizes.z}_yx{yx}_c{cells}_r{radius:g}_chunk{chunk_yx or 'full'}"
    store, tracks = root / key / "plate.zarr", root / key / "tracks"
    chunk_text = "one ZYX stack per chunk" if chunk_yx is None else f"{sizes.z}x{chunk_yx}x{chunk_yx} chunks"
    description = (
        f"{len(WELLS) * FOVS_PER_WELL} FOVs x {N_FRAMES} frames x {len(channels)} ch x {sizes.z} z x {yx}x{yx} "
        f"float32, {cells} cells/FOV, {chunk_text}"
    )
    if not store.exists():
        write_synthetic_plate(
            store,
            tracks_path=tracks,
            annotations_path=root / key / "annotations.csv",
            channel_names=channels,
            well_conditions=WELLS,
            fovs_per_well=FOVS_PER_WELL,
            n_frames=N_FRAMES,
            z_slices=sizes.z,
            yx_size=(yx, yx),
            cells_per_fov=cells,
            cell_radius=radius,
            division_probability=0.0,
            chunks=chunks,
            seed=0,
        )
    return store, tracks, description


def build(config: dict, sizes: Sizes, store: Path, tracks: Path, num_workers: int, args) -> tuple[Any, Any]:
    """Build the ContrastiveModule and the TripletDataModule of ``config`` at ``sizes``."""
    model_node = yaml.safe_load(yaml.safe_dump(config["model"]))  # deep copy
    encoder_args = model_node["init_args"]["encoder"]["init_args"]
    encoder_args["in_stack_depth"] = sizes.z
    channels = encoder_args["in_channels"]
    model_node["init_args"]["example_input_array_shape"] = [1, channels, sizes.z, sizes.final, sizes.final]
    seed_everything(0, verbose=False)
    module = instantiate(model_node)
    if args.channels_last:
        to_channels_last(module)
    return module, build_datamodule(config, sizes, store, tracks, num_workers, args.pin_memory, args.cache_pool_mib)


def build_datamodule(
    config: dict, sizes: Sizes, store: Path, tracks: Path, num_workers: int, pin_memory: bool, cache_pool_mib: int
) -> Any:
    """Build the TripletDataModule of ``config`` at ``sizes`` on the plate at ``store``."""
    data_node = yaml.safe_load(yaml.safe_dump(config["data"]))  # deep copy
    data_node["init_args"].update(
        data_path=str(store),
        tracks_path=str(tracks),
        z_range=[0, sizes.z],
        batch_size=sizes.batch,
        num_workers=num_workers,
        initial_yx_patch_size=[sizes.initial, sizes.initial],
        final_yx_patch_size=[sizes.final, sizes.final],
        pin_memory=pin_memory,
        cache_pool_bytes=cache_pool_mib << 20,
    )
    seed_everything(0, verbose=False)
    return instantiate(data_node)


def to_channels_last(module: torch.nn.Module) -> None:
    """Channels-last weights: 4-D for the 2-D backbone, 3-D for the stem (``Module.to`` refuses rank-5 weights)."""
    formats = {4: torch.channels_last, 5: torch.channels_last_3d}
    for parameter in module.parameters():
        if parameter.dim() in formats:
            parameter.data = parameter.data.contiguous(memory_format=formats[parameter.dim()])


def channels_last_views(batch: dict[str, Any]) -> dict[str, Any]:
    for key in VIEWS:
        if key in batch:
            batch[key] = batch[key].contiguous(memory_format=torch.channels_last_3d)
    return batch


class GpuUtilization:
    """Mean GPU utilization over a window: ``torch.cuda.utilization()`` polled, else ``nvidia-smi -lms`` read."""

    def __init__(self, device: torch.device, interval_ms: int = 250) -> None:
        self.device = device
        self.interval_ms = interval_ms
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._process: subprocess.Popen | None = None
        self._nvidia_smi: list[str] | None = None
        self.source = self._find_source()

    def _find_source(self) -> str:
        try:
            torch.cuda.utilization(self.device)
            return "torch.cuda.utilization"
        except Exception:  # pynvml missing or NVML unusable: try nvidia-smi
            pass
        executable = shutil.which("nvidia-smi")
        if executable is None:
            return "n/a (neither pynvml nor nvidia-smi)"
        uuid = getattr(torch.cuda.get_device_properties(self.device), "uuid", None)
        targets = ([f"GPU-{uuid}"] if uuid is not None else []) + [str(self.device.index or 0)]
        for target in targets:
            command = [executable, "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-i", target]
            try:
                result = subprocess.run(command, capture_output=True, text=True, timeout=10, check=True)
                float(result.stdout.split()[0])
            except Exception:  # try the next way of naming the device
                continue
            self._nvidia_smi = [*command, "-lms", str(self.interval_ms)]
            return f"nvidia-smi -i {target}"
        return "n/a (nvidia-smi gave no utilization)"

    @property
    def available(self) -> bool:
        """Whether utilization can be read on this machine."""
        return not self.source.startswith("n/a")

    def start(self) -> None:
        """Start sampling."""
        if not self.available:
            return
        self.samples.clear()
        self._stop.clear()
        if self._nvidia_smi is not None:
            self._process = subprocess.Popen(self._nvidia_smi, stdout=subprocess.PIPE, text=True)
            self._thread = threading.Thread(target=self._read_nvidia_smi, args=(self._process,), daemon=True)
        else:
            self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.wait(self.interval_ms / 1000):
            try:
                self.samples.append(float(torch.cuda.utilization(self.device)))
            except Exception:  # a failed poll is skipped
                pass

    def _read_nvidia_smi(self, process: subprocess.Popen) -> None:
        for line in process.stdout:
            try:
                self.samples.append(float(line.strip()))
            except ValueError:
                pass

    def stop(self) -> float | None:
        """Stop sampling and return the mean utilization in percent (None without samples)."""
        self._stop.set()
        if self._process is not None:
            self._process.terminate()
            self._process.wait()
            self._process = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        return statistics.mean(self.samples) if self.samples else None


@dataclass
class StepRecord:
    """Seconds spent in each part of one timed training step."""

    wait: float
    transfer: float
    augment: float
    compute: float


@dataclass
class StepTimer(Callback):
    """Times the parts of every training step after ``warmup`` steps.

    ``on_train_batch_start`` fires after the batch has been fetched, moved to the device and augmented, so
    the data path is timed by wrapping the data module's ``on_before_batch_transfer`` (entered once the
    loader has delivered the batch) and ``on_after_batch_transfer`` (entered once it is on the device).
    """

    warmup: int
    channels_last: bool = False
    gpu: GpuUtilization | None = None
    records: list[StepRecord] = field(default_factory=list)
    window: float = 0.0
    peak_gib: float | None = None
    utilization: float | None = None

    def __post_init__(self) -> None:
        self._marks: dict[str, float] = {}
        self._last_end = 0.0
        self._window_start = 0.0
        self._wrapped: list[tuple[Any, str]] = []
        self._sync: Callable[[], None] = lambda: None

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Wrap the data module's batch-transfer hooks with timestamps."""
        device = trainer.strategy.root_device
        if device.type == "cuda":
            self._sync = functools.partial(torch.cuda.synchronize, device)
        datamodule = trainer.datamodule
        if datamodule is None:
            return
        before, after = datamodule.on_before_batch_transfer, datamodule.on_after_batch_transfer

        # Not functools.wraps: Lightning calls a data module's transfer hook only where the data module
        # overrides it (lightning_utilities' is_overridden), and it sees through __wrapped__ to the base
        # class's on_before_batch_transfer, which the data modules do not override: the LightningModule's
        # would run instead, this timer never, and the transfer time came out negative.
        def timed_before(batch: Any, dataloader_idx: int) -> Any:
            self._marks["fetched"] = time.perf_counter()
            return before(batch, dataloader_idx)

        def timed_after(batch: Any, dataloader_idx: int) -> Any:
            self._sync()
            self._marks["transferred"] = time.perf_counter()
            batch = after(batch, dataloader_idx)
            if self.channels_last:
                batch = channels_last_views(batch)
            self._sync()
            self._marks["augmented"] = time.perf_counter()
            return batch

        datamodule.on_before_batch_transfer = timed_before
        datamodule.on_after_batch_transfer = timed_after
        self._wrapped = [(datamodule, "on_before_batch_transfer"), (datamodule, "on_after_batch_transfer")]

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Remove the wrappers."""
        for owner, name in self._wrapped:
            delattr(owner, name)  # the class's method shows through again
        self._wrapped = []

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Start the clock of the first loader wait."""
        self._last_end = time.perf_counter()

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        """Mark the start of compute (the batch is on the device and augmented)."""
        self._marks["start"] = time.perf_counter()

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """Record the step's parts; after the last warm-up step, open the timed window."""
        self._sync()
        end = time.perf_counter()
        marks, start = self._marks, self._marks["start"]
        if self._wrapped and not {"fetched", "transferred", "augmented"} <= set(marks):
            raise RuntimeError(f"the batch-transfer hooks were not timed in step {batch_idx}: marks {sorted(marks)}")
        fetched = marks.get("fetched", start)
        transferred = marks.get("transferred", fetched)
        augmented = marks.get("augmented", transferred)
        self._marks = {}
        if batch_idx >= self.warmup:
            # compute also holds the hooks from on_after_batch_transfer's exit to on_train_batch_start (microseconds)
            self.records.append(
                StepRecord(
                    wait=fetched - self._last_end,
                    transfer=transferred - fetched,
                    augment=augmented - transferred,
                    compute=end - augmented,
                )
            )
            self.window = end - self._window_start
        if batch_idx == self.warmup - 1:
            self._window_start = end
            if torch.cuda.is_available() and pl_module.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(pl_module.device)
            if self.gpu is not None:
                self.gpu.start()
        self._marks = {}
        self._last_end = end

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Close the timed window: GPU utilization and peak memory."""
        if self.gpu is not None:
            self.utilization = self.gpu.stop()
        if pl_module.device.type == "cuda":
            self.peak_gib = torch.cuda.max_memory_allocated(pl_module.device) / 2**30


class FixedBatches:
    """``n`` times the same batch: a loader that costs nothing."""

    def __init__(self, batch: dict[str, Any], n: int) -> None:
        self.batch, self.n = batch, n

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (self.batch for _ in range(self.n))


def device_batch(datamodule, device: torch.device, channels_last: bool) -> dict[str, Any]:
    """One training batch read from the data module, moved to ``device`` and augmented there."""
    datamodule.setup("fit")
    batch = datamodule.train_dataset.__getitems__(list(range(datamodule.batch_size)))
    batch = datamodule.on_after_batch_transfer(move_data_to_device(batch, device), 0)
    batch = {key: value for key, value in batch.items() if key in VIEWS}
    return channels_last_views(batch) if channels_last else batch


def fit(module, train_data, sizes: Sizes, args, gpu: GpuUtilization | None) -> StepTimer:
    timer = StepTimer(warmup=sizes.warmup, channels_last=args.channels_last, gpu=gpu)
    trainer = Trainer(
        accelerator="gpu" if args.device == "cuda" else "cpu",
        devices=1,
        precision=args.precision,
        max_epochs=1,
        limit_train_batches=sizes.batches,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
    )
    if isinstance(train_data, FixedBatches):
        trainer.fit(module, train_dataloaders=train_data)
    else:
        trainer.fit(module, datamodule=train_data)
    if len(timer.records) < sizes.steps:
        raise SystemExit(f"only {len(timer.records)} of {sizes.steps} timed steps ran: the plate has too few anchors")
    return timer


def row(name: str, timer: StepTimer, sizes: Sizes, baseline: float | None, cuda: bool) -> str:
    steps = len(timer.records)
    step_s = timer.window / steps
    mean_ms = {
        part: 1000 * statistics.mean(getattr(r, part) for r in timer.records)
        for part in StepRecord.__dataclass_fields__
    }
    samples = sizes.batch / step_s
    has_data_hooks = any(r.transfer or r.augment for r in timer.records)
    data_share = (mean_ms["wait"] + mean_ms["transfer"] + mean_ms["augment"]) / (1000 * step_s)
    cells = [
        name,
        f"{1 / step_s:.2f}",
        f"{samples:.1f}",
        f"{mean_ms['wait']:.1f}",
        f"{mean_ms['transfer']:.1f}" if has_data_hooks else "-",
        f"{mean_ms['augment']:.1f}" if has_data_hooks else "-",
        f"{mean_ms['compute']:.1f}",
        f"{mean_ms['wait'] / (1000 * step_s):.0%}",
        f"{data_share:.0%}",
        "1.00x" if baseline is None else f"{samples / baseline:.2f}x",
    ]
    if cuda:
        cells.append("n/a" if timer.utilization is None else f"{timer.utilization:.0f}%")
        cells.append("-" if timer.peak_gib is None else f"{timer.peak_gib:.2f}")
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and few steps (smoke run)")
    parser.add_argument("--config", type=Path, default=FIT_CONFIG, help="LightningCLI fit config (default fit.yml)")
    parser.add_argument("--z", type=int, default=None, help="Z slices (default: 5 on CPU, 30 on CUDA)")
    parser.add_argument("--initial-patch", type=int, default=None, help="YX read around each cell (80 / 384)")
    parser.add_argument("--final-patch", type=int, default=None, help="YX after augmentation and crop (64 / 160)")
    parser.add_argument("--batch-size", type=int, default=None, help="anchors per batch (16 / 64)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (2 / 5)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (8 / 20)")
    parser.add_argument("--num-workers", type=int, nargs="+", default=[1], help="loader threads, one row each")
    parser.add_argument("--precision", default=None, help="Lightning precision (default: the config's, 32-true)")
    parser.add_argument("--channels-last", action="store_true", help="channels_last model and channels_last_3d input")
    parser.add_argument("--pin-memory", action="store_true", help="pin batches before the transfer")
    parser.add_argument("--cache-pool-mib", type=int, default=0, help="tensorstore chunk cache (config: 0)")
    parser.add_argument("--chunk-yx", type=int, default=None, help="plate YX chunk size (default: whole image)")
    parser.add_argument("--workdir", type=Path, default=None, help="keep (and reuse) the plate here")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's choice; 1 with --quick)"
    )
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda needs a CUDA device, and torch.cuda.is_available() is False on this machine")
    defaults = DEFAULTS["quick" if args.quick else args.device]
    given = {
        "z": args.z,
        "initial": args.initial_patch,
        "final": args.final_patch,
        "batch": args.batch_size,
        "warmup": args.warmup,
        "steps": args.steps,
    }
    sizes = Sizes(**{key: defaults[key] if value is None else value for key, value in given.items()})
    if sizes.warmup < 1 or sizes.steps < 1:
        parser.error("--warmup and --steps must be at least 1 (the first step's loader wait is not defined)")
    if sizes.initial < sizes.final:
        parser.error(f"--initial-patch {sizes.initial} is smaller than --final-patch {sizes.final}")
    if args.quick and args.threads is None:
        args.threads = 1  # a smoke run: one torch thread is far less at the mercy of a busy machine
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    config = yaml.safe_load(args.config.read_text())
    args.precision = args.precision or config.get("trainer", {}).get("precision", "32-true")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    logging.getLogger("viscy_data").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*thread worker.*")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
    warnings.filterwarnings("ignore", message=".*but have no `val_dataloader`.*")
    warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\)` is deprecated.*")

    device = torch.device("cuda" if args.device == "cuda" else "cpu")
    channels = list(config["data"]["init_args"]["source_channel"])
    with tempfile.TemporaryDirectory(prefix="viscy-training-bench-") as tmp:
        root = args.workdir or Path(tmp)
        start = time.perf_counter()
        store, tracks, plate = write_plate(root, sizes, channels, args.chunk_yx)
        plate_s = time.perf_counter() - start

        module, datamodule = build(config, sizes, store, tracks, args.num_workers[0], args)
        fixed = device_batch(datamodule, device, args.channels_last)
        n_anchors = len(datamodule.train_dataset)
        if n_anchors // sizes.batch < sizes.batches:
            raise SystemExit(f"the plate has {n_anchors} training anchors, fewer than {sizes.batches} batches")
        encoder = config["model"]["init_args"]["encoder"]["init_args"]
        loss = config["model"]["init_args"]["loss_function"]["class_path"].rpartition(".")[2]
        read = "x".join(map(str, datamodule.read_yx_patch_size))
        hardware = (
            torch.cuda.get_device_name(device)
            if device.type == "cuda"
            else f"CPU, {torch.get_num_threads()} torch thread(s)"
        )
        gpu = GpuUtilization(device) if device.type == "cuda" else None
        views = [key for key in VIEWS if key in fixed]
        print(f"# ContrastiveModule fit through TripletDataModule, {hardware}, torch {torch.__version__}")
        print(
            f"# model: {args.config.name} encoder {encoder['backbone']}, {len(channels)} ch ({', '.join(channels)}), "
            f"{sizes.z} z, stem {encoder['stem_kernel_size']}, {loss} on {'+'.join(views)}; precision {args.precision}"
            f"{', channels_last' if args.channels_last else ''}"
        )
        print(
            f"# data: batch {sizes.batch}, {sizes.initial}x{sizes.initial} configured read ({read} read) -> "
            f"{sizes.final}x{sizes.final} after "
            f"{args.config.name} normalizations + augmentations; pin_memory {args.pin_memory}, tensorstore cache "
            f"{args.cache_pool_mib} MiB; {n_anchors} training anchors"
        )
        print(f"# plate: {plate}; ready in {plate_s:.1f} s")
        print(
            f"# {sizes.warmup} warm-up + {sizes.steps} timed steps per row; ms are means per step; "
            "samples/s counts anchors"
        )
        if gpu is not None:
            print(f"# GPU utilization: {gpu.source}; peak GiB: torch.cuda.max_memory_allocated over the timed steps")
        header = [
            "loader",
            "steps/s",
            "samples/s",
            "loader wait ms",
            "transfer ms",
            "augment ms",
            "compute ms",
            "loader share",
            "data share",
            "vs in-memory",
        ]
        if device.type == "cuda":
            header += ["GPU util", "peak GiB"]
        print("| " + " | ".join(header) + " |")
        print("|" + "|".join("-" * (len(name) + 2) for name in header) + "|")

        seed_everything(0, verbose=False)
        baseline_module, _ = build(config, sizes, store, tracks, args.num_workers[0], args)
        timer = fit(baseline_module, FixedBatches(fixed, sizes.batches), sizes, args, gpu)
        baseline = sizes.batch * len(timer.records) / timer.window
        print(row("in-memory fixed batch (baseline)", timer, sizes, None, device.type == "cuda"), flush=True)
        del baseline_module, fixed, timer
        gc.collect()
        for index, workers in enumerate(args.num_workers):
            if index > 0:
                module, datamodule = build(config, sizes, store, tracks, workers, args)
            timer = fit(module, datamodule, sizes, args, gpu)
            name = f"TripletDataModule, num_workers={workers}"
            print(row(name, timer, sizes, baseline, device.type == "cuda"), flush=True)
            del module, datamodule
            if device.type == "cuda":
                torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
