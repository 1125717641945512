"""Training-step throughput (forward + backward) of ContrastiveEncoder and UNeXt2.

Configurations:

- ContrastiveEncoder(backbone="convnext_tiny", in_channels=2, in_stack_depth=15) on (B, 2, 15, 160, 160);
- UNeXt2() (convnextv2_tiny, 1 channel, 5 slices in and out, 2.5D) on (B, 1, 5, 256, 256).

Each step runs forward, a mean-square loss and backward (no optimizer step). Reports samples/s over the timed
steps after warm-up, and on CUDA the peak allocated memory.

    uv run python benchmarks/models.py                      # CPU, batch 8, float32
    uv run python benchmarks/models.py --device cuda        # batch 256, bf16 autocast, channels_last,
                                                            # without and with torch.compile

A configuration that runs out of GPU memory is reported as OOM.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from training import to_channels_last  # this folder: the script's directory is on sys.path

from viscy_models import ContrastiveEncoder, UNeXt2


@dataclass(frozen=True)
class Workload:
    """A model, its per-sample input shape and the loss reducing its output."""

    name: str
    build: Callable[[], nn.Module]
    sample_shape: tuple[int, ...]
    loss: Callable[[object], Tensor]


WORKLOADS = (
    Workload(
        name="ContrastiveEncoder(convnext_tiny, 2 ch, 15 z)",
        build=lambda: ContrastiveEncoder("convnext_tiny", in_channels=2, in_stack_depth=15),
        sample_shape=(2, 15, 160, 160),
        loss=lambda out: out[1].square().mean(),
    ),
    Workload(
        name="UNeXt2(convnextv2_tiny, 2.5D 5->5 z)",
        build=UNeXt2,
        sample_shape=(1, 5, 256, 256),
        loss=lambda out: out.square().mean(),
    ),
)


@dataclass(frozen=True)
class Setting:
    """Device, batch size and speed options of one run."""

    device: str
    batch_size: int
    bf16: bool
    channels_last: bool
    compile: bool

    def describe(self) -> str:
        """One-line summary for the table."""
        parts = [f"batch {self.batch_size}", "bf16 autocast" if self.bf16 else "fp32"]
        if self.channels_last:
            parts.append("channels_last")
        parts.append("compiled" if self.compile else "eager")
        return ", ".join(parts)


def _synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def run(workload: Workload, setting: Setting, warmup: int, steps: int) -> tuple[float, float | None]:
    """Return (samples/s, peak GiB or None on CPU) for ``steps`` timed training steps."""
    torch.manual_seed(0)
    model = workload.build().to(setting.device).train()
    x = torch.randn(setting.batch_size, *workload.sample_shape, device=setting.device)
    if setting.channels_last:
        to_channels_last(model)  # Module.to(memory_format=channels_last) refuses the 3-D stem's rank-5 weights
        x = x.contiguous(memory_format=torch.channels_last_3d)
    step_model = torch.compile(model) if setting.compile else model
    autocast = (
        torch.autocast(device_type=setting.device, dtype=torch.bfloat16) if setting.bf16 else contextlib.nullcontext()
    )

    def step() -> None:
        model.zero_grad(set_to_none=True)
        with autocast:
            loss = workload.loss(step_model(x))
        loss.backward()

    for _ in range(warmup):
        step()
    _synchronize(setting.device)
    if setting.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _synchronize(setting.device)
    elapsed = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**30 if setting.device == "cuda" else None
    return steps * setting.batch_size / elapsed, peak


def settings_for(args: argparse.Namespace) -> list[Setting]:
    if args.device == "cpu":
        return [Setting("cpu", args.batch_size or 8, bf16=False, channels_last=False, compile=False)]
    batch_size = args.batch_size or 256
    compile_options = {"both": (False, True), "on": (True,), "off": (False,)}[args.compile]
    return [
        Setting("cuda", batch_size, bf16=True, channels_last=True, compile=compiled) for compiled in compile_options
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--batch-size", type=int, default=None, help="default: 8 on CPU, 256 on CUDA")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps (default: 1 on CPU, 5 on CUDA)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default: 3 on CPU, 20 on CUDA)")
    parser.add_argument(
        "--compile", choices=("both", "on", "off"), default="both", help="torch.compile on CUDA (default: both)"
    )
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda needs a CUDA device")
    warmup = args.warmup if args.warmup is not None else (1 if args.device == "cpu" else 5)
    steps = args.steps if args.steps is not None else (3 if args.device == "cpu" else 20)
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"# forward + backward, {device_name}, torch {torch.__version__}, {warmup} warm-up + {steps} timed steps")
    print(f"| {'model':46s} | {'input per sample':18s} | {'setting':44s} | {'samples/s':>9s} | {'peak GiB':>8s} |")
    print(f"|{'-' * 48}|{'-' * 20}|{'-' * 46}|{'-' * 11}|{'-' * 10}|")
    for workload in WORKLOADS:
        for setting in settings_for(args):
            try:
                throughput, peak = run(workload, setting, warmup, steps)
                speed, memory = f"{throughput:9.2f}", "-" if peak is None else f"{peak:8.2f}"
            except torch.OutOfMemoryError:
                speed, memory = "OOM", "OOM"
            if setting.device == "cuda":
                torch.cuda.empty_cache()
            shape = "x".join(map(str, workload.sample_shape))
            print(f"| {workload.name:46s} | {shape:18s} | {setting.describe():44s} | {speed:>9s} | {memory:>8s} |")


if __name__ == "__main__":
    main()
