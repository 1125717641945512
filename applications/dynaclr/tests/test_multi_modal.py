import math

import pytest
import torch
from lightning.pytorch import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from pytorch_metric_learning.losses import NTXentLoss
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn
from torch.utils.data import DataLoader, Dataset

import dynaclr
from dynaclr.multi_modal import JointContrastiveModule, JointEncoders, MultiModalContrastiveModule

from .conftest import cpu_trainer


class TinyEncoder(nn.Module):
    """Pools a one-channel patch to 2x2 and maps it to (features, projections)."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.features = nn.Linear(4, 6)
        self.projection = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.features(nn.functional.adaptive_avg_pool3d(x, (1, 2, 2)).flatten(1))
        return features, self.projection(features)


class _NTXentSubclass(NTXentLoss):
    """Stands for NT-Xent variants such as dynaclr.loss.NTXentHCL."""


def _encoders() -> JointEncoders:
    return JointEncoders(TinyEncoder(seed=0), TinyEncoder(seed=1))


class _Pairs(Dataset):
    def __init__(self, length: int = 8) -> None:
        generator = torch.Generator().manual_seed(3)
        self.anchor = torch.rand(length, 2, 3, 8, 8, generator=generator)
        self.positive = torch.rand(length, 2, 3, 8, 8, generator=generator)

    def __len__(self) -> int:
        return len(self.anchor)

    def __getitem__(self, index: int) -> dict:
        return {
            "anchor": self.anchor[index],
            "positive": self.positive[index],
            "index": {"fov_name": "A/1/0", "track_id": index, "t": 0},
        }


def _nt_xent(first: torch.Tensor, second: torch.Tensor, temperature: float) -> torch.Tensor:
    """Row i of cat(first, second) is positive with row i + B; all other rows are its negatives."""
    embeddings = nn.functional.normalize(torch.cat([first, second]), dim=1)
    similarity = embeddings @ embeddings.T / temperature
    n = similarity.shape[0]
    positives = similarity[torch.arange(n), (torch.arange(n) + n // 2) % n]
    similarity = similarity.masked_fill(torch.eye(n, dtype=torch.bool), float("-inf"))
    return (torch.logsumexp(similarity, dim=1) - positives).mean()


def test_alias_is_the_same_class():
    assert MultiModalContrastiveModule is JointContrastiveModule
    assert dynaclr.MultiModalContrastiveModule is JointContrastiveModule
    assert dynaclr.JointEncoders is JointEncoders


def test_joint_encoders_route_each_input_to_its_encoder():
    encoders = _encoders()
    source, target = torch.rand(2, 1, 3, 8, 8), torch.rand(2, 1, 3, 8, 8)
    (source_features, source_projections), (target_features, target_projections) = encoders(source, target)
    expected_source, expected_target = encoders.source_encoder(source), encoders.target_encoder(target)
    torch.testing.assert_close(source_features, expected_source[0])
    torch.testing.assert_close(target_projections, expected_target[1])
    torch.testing.assert_close(encoders.forward_features(source, target), (source_features, target_features))
    torch.testing.assert_close(encoders.forward_projections(source, target), (source_projections, target_projections))
    assert not torch.allclose(source_projections, encoders.target_encoder(source)[1])


def test_default_loss_is_a_new_nt_xent_per_module():
    first, second = JointContrastiveModule(_encoders()), JointContrastiveModule(_encoders())
    assert type(first.loss_function) is NTXentLoss
    assert first.loss_function is not second.loss_function
    subclass = _NTXentSubclass()
    assert JointContrastiveModule(_encoders(), loss_function=subclass).loss_function is subclass


def test_non_nt_xent_loss_is_refused():
    with pytest.raises(ValueError, match=r"NT-Xent-type loss.*got TripletMarginLoss"):
        JointContrastiveModule(_encoders(), loss_function=nn.TripletMarginLoss(margin=0.5))


def test_reference_embedding_logging_arguments_accept_only_their_defaults(recwarn):
    JointContrastiveModule(_encoders(), log_embeddings=False, embedding_log_frequency=10)
    assert not recwarn.list
    with pytest.raises(ValueError, match=r"log_embeddings=True is not supported.*`dynaclr predict`"):
        JointContrastiveModule(_encoders(), log_embeddings=True)
    with pytest.raises(ValueError, match=r"embedding_log_frequency=5 is not supported.*`dynaclr predict`"):
        JointContrastiveModule(_encoders(), embedding_log_frequency=5)


def test_invalid_prediction_arm_is_refused_at_construction():
    with pytest.raises(ValueError, match=r"prediction_arm 'both' is not one of \['source', 'target'\]"):
        JointContrastiveModule(_encoders(), prediction_arm="both")


def test_example_input_is_the_channel_pair():
    module = JointContrastiveModule(_encoders(), example_input_array_shape=(1, 2, 3, 8, 8))
    source, target = module.example_input_array
    assert source.shape == target.shape == (1, 1, 3, 8, 8)
    source_projections, target_projections = module(*module.example_input_array)
    assert source_projections.shape == target_projections.shape == (1, 3)


def test_loss_and_metrics_equal_hand_computed_nce(tmp_path):
    module = JointContrastiveModule(_encoders(), loss_function=NTXentLoss(temperature=0.5))
    dataset = _Pairs(length=4)
    trainer = cpu_trainer(tmp_path, logger=False)
    trainer.validate(module, dataloaders=DataLoader(dataset, batch_size=4))

    encoders = module.model
    with torch.no_grad():
        anchor_source, anchor_target = encoders.forward_projections(dataset.anchor[:, 0:1], dataset.anchor[:, 1:2])
        positive_source, positive_target = encoders.forward_projections(
            dataset.positive[:, 0:1], dataset.positive[:, 1:2]
        )
    expected = _nt_xent(anchor_source, anchor_target, 0.5) + _nt_xent(positive_target, positive_source, 0.5)
    metrics = trainer.callback_metrics
    assert float(metrics["loss/val"]) == pytest.approx(float(expected), rel=1e-5)
    cosine = nn.functional.cosine_similarity(anchor_source, anchor_target).mean()
    assert float(metrics["metrics/cosine_similarity/positive/val"]) == pytest.approx(float(cosine), rel=1e-5)
    assert "metrics/cosine_similarity/negative_mean/val" in metrics


class _LearningRates(Callback):
    def __init__(self) -> None:
        self.values = []

    def on_train_epoch_start(self, trainer, pl_module):
        self.values.append(trainer.optimizers[0].param_groups[0]["lr"])


def test_fit_with_tensorboard_logs_metrics_images_and_warmup_cosine(tmp_path):
    module = JointContrastiveModule(_encoders(), lr=1e-2, schedule="WarmupCosine", warmup_epochs=1)
    learning_rates = _LearningRates()
    logger = TensorBoardLogger(tmp_path, name="joint")
    loader = DataLoader(_Pairs(), batch_size=4)
    trainer = cpu_trainer(tmp_path, max_epochs=2, logger=logger, callbacks=[learning_rates], log_every_n_steps=1)
    before = [parameter.detach().clone() for parameter in module.parameters()]
    trainer.fit(module, train_dataloaders=loader, val_dataloaders=loader)

    assert learning_rates.values == pytest.approx([0.5e-2, 1e-2])
    assert any(not torch.equal(b, a) for b, a in zip(before, module.parameters(), strict=True))
    metrics = trainer.callback_metrics
    for key in ("loss/train_epoch", "loss/val", "metrics/euclidean_distance/positive/train"):
        assert math.isfinite(float(metrics[key]))
    events = EventAccumulator(logger.log_dir, size_guidance={"images": 0})
    events.Reload()
    assert {"train_samples", "val_samples"} <= set(events.Tags()["images"])


def test_fast_dev_run_without_logger(tmp_path):
    module = JointContrastiveModule(_encoders())
    loader = DataLoader(_Pairs(), batch_size=4)
    trainer = cpu_trainer(tmp_path, fast_dev_run=True, logger=False)
    trainer.fit(module, train_dataloaders=loader, val_dataloaders=loader)
    assert math.isfinite(float(trainer.callback_metrics["loss/train_step"]))
    assert module.training_step_outputs == module.validation_step_outputs == []


@pytest.mark.parametrize(("arm", "channel"), [("source", 0), ("target", 1)])
def test_predict_uses_the_chosen_arm_and_channel(tmp_path, arm, channel):
    module = JointContrastiveModule(_encoders(), prediction_arm=arm)
    dataset = _Pairs(length=4)
    predictions = cpu_trainer(tmp_path, logger=False).predict(module, dataloaders=DataLoader(dataset, batch_size=4))
    encoder = getattr(module.model, f"{arm}_encoder")
    with torch.no_grad():
        features, projections = encoder(dataset.anchor[:, channel : channel + 1])
    torch.testing.assert_close(predictions[0]["features"], features)
    torch.testing.assert_close(predictions[0]["projections"], projections)
    assert predictions[0]["index"]["track_id"].tolist() == [0, 1, 2, 3]
