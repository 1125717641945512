"""DynaCLR quickstart: train, embed and evaluate on a synthetic plate, on a CPU (``# %%`` cells)."""

# %% [markdown]
# # DynaCLR quickstart
#
# Contrastive learning of cell-state dynamics, end to end on a CPU in a minute or two:
#
# 1. write a small synthetic time-lapse plate: moving, dividing cells, half of the wells
#    infected (their fluorescent reporter turns bright and nuclear);
# 2. train a small DynaCLR encoder: the positive of each cell is the same cell one frame later;
# 3. predict an embedding for every tracked cell with the ``EmbeddingWriter``;
# 4. look at the principal components of the embeddings coloured by the ground-truth infection
#    state, and train a linear classifier of infection state on them.
#
# Run it as a script, from the repository root:
#
#     uv run python applications/dynaclr/examples/quickstart.py --output-dir quickstart
#
# or open it in VS Code / Jupyter (the ``# %%`` cells), where it uses the defaults below.
# The real configurations (larger encoder, GPU, DDP) are in ``configs/fit.yml`` and
# ``configs/predict.yml``.

# %%
import argparse
import sys
import tempfile
import time
from pathlib import Path

import anndata
import matplotlib
import matplotlib.pyplot as plt
from lightning.pytorch import Trainer, seed_everything
from pytorch_metric_learning.losses import NTXentLoss

from dynaclr.engine import ContrastiveModule
from viscy_data import LABEL_INFECTION_STATE
from viscy_data.synthetic import write_synthetic_plate
from viscy_data.triplet import TripletDataModule
from viscy_models.contrastive import ContrastiveEncoder
from viscy_transforms import (
    BatchedRandAdjustContrastd,
    BatchedRandAffined,
    BatchedRandGaussianNoised,
    BatchedScaleIntensityRangePercentilesd,
    NormalizeSampled,
)
from viscy_utils.callbacks.embedding_writer import EmbeddingWriter
from viscy_utils.evaluation.annotation import load_annotation_anndata
from viscy_utils.evaluation.linear_classifier import train_linear_classifier

matplotlib.use("Agg")  # write the figure to a file, no display needed

parser = argparse.ArgumentParser(description="DynaCLR quickstart on a synthetic plate, on a CPU.")
parser.add_argument("--output-dir", type=Path, default=None, help="default: a new temporary directory")
parser.add_argument("--overwrite", action="store_true", help="replace the outputs of an earlier run")
parser.add_argument("--max-epochs", type=int, default=2, help="default: %(default)s")
# In a notebook kernel, sys.argv holds the kernel's own arguments: use the defaults there.
args = parser.parse_args([] if "ipykernel" in sys.modules else None)

output_dir = args.output_dir or Path(tempfile.mkdtemp(prefix="dynaclr_quickstart_"))
output_dir.mkdir(parents=True, exist_ok=True)
plate_path = output_dir / "plate.zarr"
tracks_path = output_dir / "tracks"
annotations_path = output_dir / "annotations.csv"
checkpoint_path = output_dir / "dynaclr_quickstart.ckpt"
embeddings_path = output_dir / "embeddings.zarr"
figure_path = output_dir / "pca_infection_state.png"
outputs = [plate_path, tracks_path, annotations_path, checkpoint_path, embeddings_path, figure_path]
existing = [str(path) for path in outputs if path.exists()]
if existing and not args.overwrite:
    sys.exit(f"Refusing to overwrite {', '.join(existing)}; pass --overwrite to replace them.")
print(f"Writing everything under {output_dir}")
start = time.perf_counter()
seed_everything(42, verbose=False)

# %% [markdown]
# ## 1. A synthetic plate
#
# Two channels: ``Phase3D`` (label-free-like) and ``RFP`` (the infection reporter). Wells
# ``A/1`` and ``B/1`` are uninfected, ``A/2`` and ``B/2`` infected; each infected cell turns
# infected at its own time. Every FOV comes with an Ultrack tracks CSV and the plate with a
# ground-truth annotations CSV.

# %%
plate = write_synthetic_plate(
    plate_path,
    tracks_path=tracks_path,
    annotations_path=annotations_path,
    channel_names=["Phase3D", "RFP"],
    z_slices=5,
    yx_size=(160, 160),
    n_frames=6,
    cells_per_fov=8,
    seed=0,
    overwrite=args.overwrite,
)
print(f"Plate {plate.store_path}: (T, C, Z, Y, X) = {plate.shape}, {len(plate.fov_names)} FOVs")
print(f"Wells: {plate.well_conditions}")

# %% [markdown]
# ## 2. Train a small encoder
#
# ``TripletDataModule`` reads a 40 x 40 patch around each tracked cell (all 5 Z slices) and, as
# its positive, the same cell one frame later (``time_interval=1``). Normalization,
# augmentation and the final 32 x 32 crop run on whole batches. The encoder is the smallest
# timm ConvNeXt, whose stem folds the 5 Z slices into channels; the loss is NT-Xent, so the
# other cells of the batch are the negatives.

# %%
channels = ["Phase3D", "RFP"]
datamodule = TripletDataModule(
    data_path=str(plate_path),
    tracks_path=str(tracks_path),
    source_channel=channels,
    z_range=(0, 5),
    initial_yx_patch_size=(40, 40),
    final_yx_patch_size=(32, 32),
    batch_size=32,
    num_workers=1,
    time_interval=1,
    normalizations=[
        NormalizeSampled(keys=["Phase3D"], level="fov_statistics", subtrahend="mean", divisor="std"),
        BatchedScaleIntensityRangePercentilesd(keys=["RFP"], lower=50, upper=99, b_min=0.0, b_max=1.0),
    ],
    augmentations=[
        BatchedRandAffined(keys=channels, prob=0.8, rotate_range=[3.14, 0.0, 0.0]),
        BatchedRandAdjustContrastd(keys=["RFP"], prob=0.5, gamma=(0.8, 1.2)),
        BatchedRandGaussianNoised(keys=["Phase3D"], prob=0.5, mean=0.0, std=0.2),
    ],
)
encoder = ContrastiveEncoder(
    backbone="convnext_atto",
    in_channels=len(channels),
    in_stack_depth=5,
    stem_kernel_size=(5, 4, 4),
    stem_stride=(5, 4, 4),
    embedding_dim=320,
    projection_dim=32,
)
model = ContrastiveModule(
    encoder,
    loss_function=NTXentLoss(temperature=0.2),
    lr=2e-4,
    log_batches_per_epoch=0,
    example_input_array_shape=(1, len(channels), 5, 32, 32),
)
trainer = Trainer(
    accelerator="cpu",
    devices=1,
    max_epochs=args.max_epochs,
    logger=False,
    enable_checkpointing=False,
    enable_model_summary=False,
    log_every_n_steps=1,
    default_root_dir=output_dir,
)
trainer.fit(model, datamodule=datamodule)
trainer.save_checkpoint(checkpoint_path)
print(f"Trained {trainer.current_epoch} epochs ({trainer.global_step} steps), saved {checkpoint_path}")

# %% [markdown]
# ## 3. Embed every tracked cell
#
# ``EmbeddingWriter`` collects ``predict_step``'s features and projections with each cell's
# tracking index and writes an AnnData zarr store: ``X`` the 320 ConvNeXt features,
# ``obsm["X_projections"]``, ``obsm["X_pca"]`` and ``obs`` the tracking columns.

# %%
writer = EmbeddingWriter(embeddings_path, pca_kwargs={"n_components": 8}, overwrite=args.overwrite)
predictor = Trainer(accelerator="cpu", devices=1, logger=False, callbacks=[writer], enable_progress_bar=False)
predictor.predict(model, datamodule=datamodule, return_predictions=False)
embeddings = anndata.read_zarr(embeddings_path)
print(f"Embeddings {embeddings_path}: {embeddings.n_obs} cells x {embeddings.n_vars} features")

# %% [markdown]
# ## 4. Infection state in the embedding space
#
# Join the ground-truth annotations on ``(fov_name, id)``, plot the first two principal
# components coloured by infection state, and fit a logistic regression on the features
# (validated on held-out tracks).

# %%
state_names = {label: name for name, label in LABEL_INFECTION_STATE.items()}
embeddings = load_annotation_anndata(embeddings, annotations_path, "infection_state", categories=state_names)
figure, axes = plt.subplots(figsize=(5, 4.5))
for state, color in (("uninfected", "tab:blue"), ("infected", "tab:red")):
    selected = (embeddings.obs["infection_state"] == state).to_numpy()
    pcs = embeddings.obsm["X_pca"][selected]
    axes.scatter(pcs[:, 0], pcs[:, 1], s=8, alpha=0.7, color=color, label=f"{state} ({int(selected.sum())})")
axes.set(xlabel="PC1", ylabel="PC2", title="DynaCLR embeddings of synthetic cells")
axes.legend(title="infection_state")
figure.tight_layout()
figure.savefig(figure_path, dpi=120)
plt.close(figure)
print(f"PCA plot: {figure_path}")

pipeline, metrics = train_linear_classifier(
    embeddings, "infection_state", classifier_params={"max_iter": 1000, "class_weight": "balanced"}
)
print(f"Linear classifier of infection_state: train accuracy {metrics['train_accuracy']:.3f}")
print(f"Linear classifier of infection_state: validation accuracy {metrics['val_accuracy']:.3f}")
print(f"Done in {time.perf_counter() - start:.0f} s; outputs in {output_dir}")
