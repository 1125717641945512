import json

import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger
from pytorch_metric_learning.losses import NTXentLoss
from torch import nn
from torch.utils.data import DataLoader, Dataset

from dynaclr._optim import warmup_cosine_factor
from dynaclr.engine import ContrastiveModule, in_batch_negative_metrics, ntxent_labels, ntxent_pairs
from dynaclr.loss import NTXentHCL
from viscy_models.contrastive import ContrastiveEncoder

from .conftest import FIXTURES, cpu_trainer


class TinyEncoder(nn.Module):
    """(B, C, Z, Y, X) -> (features (B, 8), projections (B, 4))."""

    def __init__(self, in_channels: int = 1) -> None:
        super().__init__()
        self.encoder = nn.Linear(in_channels * 4, 8)
        self.projection = nn.Linear(8, 4)

    def forward(self, x):
        features = self.encoder(nn.functional.adaptive_avg_pool3d(x, (1, 2, 2)).flatten(1))
        return features, self.projection(features)


class _Triplets(Dataset):
    def __init__(self, length: int = 16, negative: bool = True) -> None:
        generator = torch.Generator().manual_seed(0)
        self.anchor = torch.rand(length, 1, 3, 8, 8, generator=generator)
        self.negative = negative

    def __len__(self):
        return len(self.anchor)

    def __getitem__(self, index):
        sample = {"anchor": self.anchor[index], "positive": self.anchor[index] * 0.9 + 0.05}
        if self.negative:
            sample["negative"] = self.anchor[(index + 1) % len(self)]
        return sample


def _fit(module, tmp_path, logger, max_epochs=1, callbacks=(), negative=True):
    trainer = cpu_trainer(
        tmp_path, max_epochs=max_epochs, logger=logger, callbacks=list(callbacks), log_every_n_steps=1
    )
    loader = DataLoader(_Triplets(negative=negative), batch_size=4)
    trainer.fit(module, loader, DataLoader(_Triplets(negative=negative), batch_size=4))
    return trainer


def test_default_loss_is_a_new_triplet_loss_per_module():
    first, second = ContrastiveModule(TinyEncoder()), ContrastiveModule(TinyEncoder())
    assert isinstance(first.loss_function, nn.TripletMarginLoss)
    assert first.loss_function.margin == 0.5
    assert first.loss_function is not second.loss_function


def test_encoder_is_stored_as_model_and_example_input_is_deterministic():
    encoder = TinyEncoder()
    module = ContrastiveModule(encoder, example_input_array_shape=(2, 1, 3, 8, 8))
    assert module.model is encoder
    assert all(key.startswith("model.") for key in module.state_dict())
    assert torch.equal(module.example_input_array, torch.zeros(2, 1, 3, 8, 8))
    features, projections = module(module.example_input_array)
    assert features.shape == (2, 8)
    assert projections.shape == (2, 4)


def test_invalid_arguments_name_the_valid_choices():
    with pytest.raises(ValueError, match=r"schedule 'Cosine' is not one of \['Constant', 'WarmupCosine'\]"):
        ContrastiveModule(TinyEncoder(), schedule="Cosine")
    with pytest.raises(ValueError, match="log_negative_metrics_every_n_epochs"):
        ContrastiveModule(TinyEncoder(), log_negative_metrics_every_n_epochs=0)


def test_log_embeddings_default_is_accepted_silently_and_true_refused_naming_dynaclr_predict(recwarn):
    ContrastiveModule(TinyEncoder(), log_embeddings=False)
    assert not recwarn.list
    with pytest.raises(ValueError, match=r"log_embeddings=True is not supported.*`dynaclr predict`.*EmbeddingWriter"):
        ContrastiveModule(TinyEncoder(), log_embeddings=True)


def test_reference_checkpoint_loads_strictly_and_predicts_the_encoders_embeddings(tmp_path):
    # state_dict keys and shapes of the reference ContrastiveEncoder(convnext_tiny, 2 channels, 15 Z),
    # printed from the reference package (copied from viscy-models' fixtures); the reference
    # ContrastiveModule stored the encoder as `model`
    table = json.loads((FIXTURES / "reference_contrastive_encoder_state_dict.json").read_text())
    generator = torch.Generator().manual_seed(0)
    state_dict = {}
    for key, shape in table["state_dict"]:
        if key.endswith("num_batches_tracked"):
            state_dict[f"model.{key}"] = torch.tensor(3)
        elif key.endswith("running_var"):
            state_dict[f"model.{key}"] = torch.rand(shape, generator=generator) + 0.5
        else:
            state_dict[f"model.{key}"] = torch.randn(shape, generator=generator) * 0.05
    ckpt = tmp_path / "reference.ckpt"
    torch.save({"state_dict": state_dict, "epoch": 104}, ckpt)

    module = ContrastiveModule(ContrastiveEncoder(**table["kwargs"]), ckpt_path=str(ckpt)).eval()
    encoder = ContrastiveEncoder(**table["kwargs"]).eval()
    encoder.load_state_dict({key.removeprefix("model."): value for key, value in state_dict.items()}, strict=True)
    x = torch.randn(2, 2, 15, 64, 64, generator=generator)
    with torch.no_grad():
        prediction = module.predict_step({"anchor": x, "index": {"id": [1, 2]}}, 0)
        features, projections = encoder(x)
    assert torch.equal(prediction["features"], features)
    assert torch.equal(prediction["projections"], projections)
    assert prediction["index"] == {"id": [1, 2]}
    assert prediction["features"].shape == (2, 768)


def test_checkpoint_with_an_unknown_key_is_refused(tmp_path):
    state_dict = {f"model.{key}": value for key, value in TinyEncoder().state_dict().items()}
    state_dict["model.extra.weight"] = torch.zeros(1)
    ckpt = tmp_path / "bad.ckpt"
    torch.save({"state_dict": state_dict}, ckpt)
    with pytest.raises(RuntimeError, match="Unexpected key"):
        ContrastiveModule(TinyEncoder(), ckpt_path=str(ckpt))


def test_ntxent_loss_uses_in_batch_negatives_of_anchor_and_positive():
    loss_function = NTXentLoss(temperature=0.5)
    module = ContrastiveModule(TinyEncoder(), loss_function=loss_function)
    anchor, positive = torch.randn(4, 4), torch.randn(4, 4)
    expected = loss_function(torch.cat([anchor, positive]), torch.tensor([0, 1, 2, 3, 0, 1, 2, 3]))
    assert torch.equal(module._contrastive_loss(anchor, positive, None, None), expected)
    assert ntxent_labels(3, torch.device("cpu")).tolist() == [0, 1, 2, 0, 1, 2]


def test_ntxent_pairs_pair_each_anchor_with_its_positive_and_other_lineages_only():
    anchors, positives, negative_anchors, negatives = ntxent_pairs(torch.tensor([5, 5, 7]))
    assert sorted(zip(anchors.tolist(), positives.tolist(), strict=True)) == [
        (0, 3),
        (1, 4),
        (2, 5),
        (3, 0),
        (4, 1),
        (5, 2),
    ]
    negatives_of = {row: sorted(negatives[negative_anchors == row].tolist()) for row in range(6)}
    # rows 0, 1, 3, 4 are lineage 5 (anchors 0, 1 and their positives); rows 2, 5 lineage 7
    assert negatives_of == {0: [2, 5], 1: [2, 5], 2: [0, 1, 3, 4], 3: [2, 5], 4: [2, 5], 5: [0, 1, 3, 4]}


def _ntxent_by_hand(
    anchor: torch.Tensor, positive: torch.Tensor, lineage: list[int], temperature: float
) -> torch.Tensor:
    """NT-Xent of cat(anchor, positive) where a row's negatives are the rows of other lineages."""
    rows = torch.cat([anchor, positive])
    lineages = lineage + lineage
    batch_size = len(lineage)
    similarity = nn.functional.normalize(rows, dim=1) @ nn.functional.normalize(rows, dim=1).T / temperature
    losses = []
    for row in range(2 * batch_size):
        partner = (row + batch_size) % (2 * batch_size)
        negatives = [other for other in range(2 * batch_size) if lineages[other] != lineages[row]]
        denominator = similarity[row, partner].exp() + similarity[row, negatives].exp().sum()
        losses.append(-(similarity[row, partner].exp() / denominator).log())
    return torch.stack(losses).mean()


@pytest.mark.parametrize("loss_function", [NTXentLoss(temperature=0.5), NTXentHCL(temperature=0.5, beta=0.0)])
def test_ntxent_never_takes_a_row_of_the_anchors_lineage_as_a_negative(loss_function):
    """Two anchors of one lineage (a cell at two time points) are not pushed apart (regression)."""
    generator = torch.Generator().manual_seed(3)
    anchor, positive = torch.randn(4, 6, generator=generator), torch.randn(4, 6, generator=generator)
    module = ContrastiveModule(TinyEncoder(), loss_function=loss_function)
    lineage = [0, 0, 1, 2]
    loss = module._contrastive_loss(anchor, positive, None, torch.tensor(lineage))
    # float32 sums of 8 exponentials: agreement to 1e-6 relative
    torch.testing.assert_close(loss, _ntxent_by_hand(anchor, positive, lineage, 0.5), rtol=1e-6, atol=1e-6)
    assert not torch.isclose(loss, _ntxent_by_hand(anchor, positive, [0, 1, 2, 3], 0.5))
    distinct = module._contrastive_loss(anchor, positive, None, torch.tensor([0, 1, 2, 3]))
    torch.testing.assert_close(distinct, module._contrastive_loss(anchor, positive, None, None), rtol=1e-6, atol=1e-6)


def test_triplet_loss_needs_negatives_and_says_how_to_get_them():
    module = ContrastiveModule(TinyEncoder())
    anchor, positive, negative = torch.randn(3, 4, 4)
    assert torch.equal(
        module._contrastive_loss(anchor, positive, negative),
        nn.TripletMarginLoss(margin=0.5)(anchor, positive, negative),
    )
    with pytest.raises(ValueError, match="return_negative: true"):
        module._contrastive_loss(anchor, positive, None)


@pytest.mark.parametrize("lineage", [None, [0, 1, 0], [4, 4, 7]])
def test_in_batch_negative_metrics_match_a_brute_force_count(lineage):
    """The logged negatives are the loss's: without lineage every other pair, with it other lineages only."""
    generator = torch.Generator().manual_seed(1)
    anchor, positive = torch.randn(3, 5, generator=generator), torch.randn(3, 5, generator=generator)
    metrics = in_batch_negative_metrics(anchor, positive, "val", None if lineage is None else torch.tensor(lineage))
    a, p = anchor.numpy(), positive.numpy()
    candidates = np.concatenate([a, p])
    row_lineage = list(range(3)) * 2 if lineage is None else lineage * 2
    cosines, distances = [[] for _ in range(3)], [[] for _ in range(3)]
    for i in range(3):
        for j in range(6):
            if row_lineage[j] == row_lineage[i]:
                continue
            cosines[i].append(a[i] @ candidates[j] / np.linalg.norm(a[i]) / np.linalg.norm(candidates[j]))
            distances[i].append(np.linalg.norm(a[i] - candidates[j]))
    all_cosines = [value for row in cosines for value in row]
    all_distances = [value for row in distances for value in row]
    assert len(all_cosines) == (12 if lineage is None else 8)
    positive_cosine = np.mean([a[i] @ p[i] / np.linalg.norm(a[i]) / np.linalg.norm(p[i]) for i in range(3)])
    # float32 dot products of 5 values against float64 sums: 1e-5 relative
    np.testing.assert_allclose(metrics["metrics/cosine_similarity/negative_mean/val"], np.mean(all_cosines), rtol=1e-5)
    np.testing.assert_allclose(
        metrics["metrics/cosine_similarity/negative_sum/val"], np.mean([sum(row) for row in cosines]), rtol=1e-5
    )
    np.testing.assert_allclose(
        metrics["metrics/euclidean_distance/negative_mean/val"], np.mean(all_distances), rtol=1e-5
    )
    np.testing.assert_allclose(
        metrics["metrics/euclidean_distance/negative_sum/val"], np.mean([sum(row) for row in distances]), rtol=1e-5
    )
    np.testing.assert_allclose(
        metrics["metrics/margin_positive/negative/val"], positive_cosine - np.mean(all_cosines), rtol=1e-5
    )


def test_in_batch_negative_metrics_of_a_one_lineage_batch_are_empty():
    anchor, positive = torch.randn(2, 4), torch.randn(2, 4)
    assert in_batch_negative_metrics(anchor, positive, "train", torch.tensor([3, 3])) == {}


@pytest.mark.parametrize("loss", ["triplet", "ntxent"])
def test_fit_logs_loss_and_similarity_metrics_with_their_stage(tmp_path, loss):
    loss_function = NTXentLoss() if loss == "ntxent" else None
    module = ContrastiveModule(TinyEncoder(), loss_function=loss_function, example_input_array_shape=(1, 1, 3, 8, 8))
    trainer = _fit(module, tmp_path, CSVLogger(tmp_path), negative=loss == "triplet")
    metrics = trainer.callback_metrics
    expected = {
        "loss/train",
        "loss/val",
        "metrics/cosine_similarity/positive/train",
        "metrics/euclidean_distance/positive/val",
    }
    if loss == "ntxent":
        expected |= {"metrics/cosine_similarity/negative_mean/train", "metrics/margin_positive/negative/val"}
    else:
        expected |= {"metrics/cosine_similarity_negative/train", "metrics/euclidean_distance_negative/val"}
    assert expected <= set(metrics)
    logged = (tmp_path / "lightning_logs" / "version_0" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"loss/train_step", "loss/train_epoch", "loss/val"} <= set(logged)
    assert "loss/val_step" not in logged


def test_warmup_cosine_schedule_changes_the_learning_rate_every_epoch(tmp_path):
    module = ContrastiveModule(TinyEncoder(), lr=0.1, schedule="WarmupCosine", warmup_epochs=2)
    monitor = LearningRateMonitor(logging_interval="epoch")
    _fit(module, tmp_path, CSVLogger(tmp_path), max_epochs=5, callbacks=[monitor])
    rows = (tmp_path / "lightning_logs" / "version_0" / "metrics.csv").read_text().splitlines()
    column = rows[0].split(",").index("lr-AdamW")
    learning_rates = [float(row.split(",")[column]) for row in rows[1:] if row.split(",")[column]]
    expected = [0.1 * warmup_cosine_factor(epoch, 2, 5) for epoch in range(5)]
    np.testing.assert_allclose(learning_rates, expected, rtol=1e-6)
    assert learning_rates[0] < learning_rates[1] < learning_rates[2] > learning_rates[3] > learning_rates[4]


def test_warmup_cosine_factor_warms_up_then_decays_to_zero():
    assert warmup_cosine_factor(0, 3, 10) == 0.25
    assert warmup_cosine_factor(3, 3, 10) == 1.0
    assert warmup_cosine_factor(10, 3, 10) == pytest.approx(0.0)
    assert warmup_cosine_factor(12, 3, 10) == pytest.approx(0.0)


class _ImageLogger(Logger):
    """A logger that only knows `log_image`, as W&B's does."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[tuple[str, tuple[int, ...], int]] = []

    @property
    def name(self):
        return "images"

    @property
    def version(self):
        return 0

    def log_hyperparams(self, params, *args, **kwargs):
        pass

    def log_metrics(self, metrics, step=None):
        pass

    def log_image(self, key, images, step=None):
        self.images.append((key, images[0].shape, step))


def test_sample_images_reach_loggers_that_take_images_and_are_skipped_without_a_logger(tmp_path):
    image_logger = _ImageLogger()
    module = ContrastiveModule(TinyEncoder(), log_batches_per_epoch=2, log_samples_per_batch=2)
    _fit(module, tmp_path, [image_logger, TensorBoardLogger(tmp_path, name="tb")])
    keys = [key for key, _, _ in image_logger.images]
    assert sorted(keys) == ["train_samples", "val_samples"]
    _, shape, step = image_logger.images[0]
    # 2 batches x 2 samples stacked; anchor, positive and negative side by side; RGB
    assert shape == (4 * 8, 3 * 8, 3)
    assert step == 0
    events = list((tmp_path / "tb").rglob("events.out.tfevents*"))
    assert events
    assert events[0].stat().st_size > 0
    assert module.training_step_outputs == []
    assert module.validation_step_outputs == []

    _fit(ContrastiveModule(TinyEncoder()), tmp_path / "none", logger=False)
