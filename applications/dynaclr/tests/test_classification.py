import copy
import math
import sys
from functools import cache
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from lightning.pytorch.loggers import TensorBoardLogger
from sklearn.metrics import accuracy_score, f1_score
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from dynaclr.classification import ClassificationModule, ClassificationPredictionWriter, predictions_to_dataframe
from viscy_models.contrastive import ContrastiveEncoder

from .conftest import cpu_trainer

SHAPE = (1, 5, 32, 32)


def _encoder(backbone: str = "convnext_atto") -> ContrastiveEncoder:
    return copy.deepcopy(_prototype_encoder(backbone))


@cache
def _prototype_encoder(backbone: str) -> ContrastiveEncoder:
    torch.manual_seed(0)
    return ContrastiveEncoder(
        backbone,
        in_channels=1,
        in_stack_depth=5,
        stem_kernel_size=(5, 4, 4),
        stem_stride=(5, 4, 4),
        embedding_dim=16,
        projection_dim=8,
    )


def _module() -> ClassificationModule:
    return ClassificationModule(_encoder(), lr=1e-3, example_input_array_shape=(2, *SHAPE))


def _images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, *SHAPE, generator=torch.Generator().manual_seed(seed))


class _IndexedPatches(Dataset):
    def __init__(self, n: int) -> None:
        self.images = _images(n, seed=1)
        self.labels = (torch.arange(n) % 2).float()[:, None]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple:
        indices = {"fov_name": f"/A/1/{index % 2}", "track_id": index, "t": 2 * index}
        return self.images[index], self.labels[index], indices


def test_head_is_one_logit_and_checkpoint_keys_are_the_reference_ones():
    module = _module()
    fc = module.backbone.head.fc
    assert isinstance(fc, nn.Linear)
    assert (fc.in_features, fc.out_features) == (320, 1)
    state = module.state_dict()
    assert state["backbone.head.fc.weight"].shape == (1, 320)
    assert state["loss.pos_weight"] == 1.0
    assert {key.split(".")[0] for key in state} == {"stem", "backbone", "loss"}
    assert module(module.example_input_array).shape == (2, 1)
    assert isinstance(module.loss, nn.BCEWithLogitsLoss)
    assert module.loss is not _module().loss


def test_resnet_backbone_gets_a_one_logit_fc():
    module = ClassificationModule(_encoder("resnet18"), lr=None)
    assert (module.backbone.fc.in_features, module.backbone.fc.out_features) == (512, 1)
    assert module.configure_optimizers().defaults["lr"] == 1e-3  # AdamW's default


def test_encoder_without_timm_backbone_is_refused():
    encoder = SimpleNamespace(stem=nn.Identity(), encoder=nn.Linear(2, 2))
    with pytest.raises(TypeError, match="timm model, got Linear"):
        ClassificationModule(encoder, lr=1e-3)


def test_metrics_are_sklearn_scores_of_sigmoid_probabilities(tmp_path):
    module = _module().eval()
    images = _images(8)
    with torch.no_grad():
        logits = module(images)[:, 0]
    # Spread the logits (std 2), then put the 4th smallest at 0.25: its probability is above 0.5 but the
    # logit is below, so metrics of raw logits (the reference's bug) would score it differently.
    fc = module.backbone.head.fc
    with torch.no_grad():
        fc.weight *= 2 / logits.std()
        fc.bias.zero_()
        logits = module(images)[:, 0]
        fc.bias += 0.25 - torch.sort(logits).values[3]
        logits = module(images)[:, 0]
    labels = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.0])
    between = (logits > 0) & (logits < 0.5)
    assert between.any()
    labels[between] = 1.0
    predicted = (torch.sigmoid(logits) > 0.5).numpy()
    assert 0 < predicted.sum() < 8

    trainer = cpu_trainer(tmp_path, logger=False)
    trainer.validate(module, dataloaders=DataLoader(TensorDataset(images, labels[:, None]), batch_size=3))
    metrics = trainer.callback_metrics
    assert float(metrics["metric/accuracy/val"]) == pytest.approx(accuracy_score(labels.numpy(), predicted))
    assert float(metrics["metric/f1_score/val"]) == pytest.approx(f1_score(labels.numpy(), predicted))
    expected_loss = nn.functional.binary_cross_entropy_with_logits(logits, labels)
    assert float(metrics["loss/val"]) == pytest.approx(float(expected_loss), rel=1e-5)
    raw_logit_accuracy = accuracy_score(labels.numpy(), (logits > 0.5).numpy())
    assert float(metrics["metric/accuracy/val"]) != pytest.approx(raw_logit_accuracy)


@pytest.mark.parametrize("use_tensorboard", [True, False])
def test_fit_logs_loss_metrics_and_examples(tmp_path, use_tensorboard):
    module = _module()
    dataset = TensorDataset(_images(4), (torch.arange(4) % 2).float()[:, None])
    loader = DataLoader(dataset, batch_size=2)
    logger = TensorBoardLogger(tmp_path, name="classifier") if use_tensorboard else False
    trainer = cpu_trainer(
        tmp_path, max_epochs=1, limit_train_batches=1, num_sanity_val_steps=0, logger=logger, log_every_n_steps=1
    )
    trainer.fit(module, train_dataloaders=loader, val_dataloaders=loader)
    metrics = trainer.callback_metrics
    for key in ("loss/train_step", "loss/train_epoch", "loss/val", "metric/accuracy/train", "metric/f1_score/val"):
        assert math.isfinite(float(metrics[key])), key
    assert module.train_examples == module.val_examples == []
    if use_tensorboard:
        events = EventAccumulator(logger.log_dir, size_guidance={"images": 0})
        events.Reload()
        assert {"train/examples", "val/examples"} <= set(events.Tags()["images"])
        example = events.Images("val/examples")[-1]
        assert (example.height, example.width) == (2 * 32, 32)  # the first patch of each of the 2 batches


def test_prediction_writer_round_trip(tmp_path):
    module = _module()
    dataset = _IndexedPatches(6)
    output = tmp_path / "out" / "predictions.csv"
    trainer = cpu_trainer(tmp_path, logger=False, callbacks=[ClassificationPredictionWriter(output)])
    trainer.predict(module, dataloaders=DataLoader(dataset, batch_size=4), return_predictions=False)

    table = pd.read_csv(output)
    assert list(table.columns) == ["fov_name", "track_id", "t", "label", "prediction"]
    assert table["track_id"].tolist() == list(range(6))
    assert table["t"].tolist() == [0, 2, 4, 6, 8, 10]
    assert table["fov_name"].tolist() == ["/A/1/0", "/A/1/1"] * 3
    np.testing.assert_array_equal(table["label"], dataset.labels[:, 0].numpy())
    with torch.no_grad():
        expected = torch.sigmoid(module.eval()(dataset.images))[:, 0].numpy()
    np.testing.assert_allclose(table["prediction"], expected, rtol=1e-5, atol=1e-6)


def test_prediction_writer_refuses_an_existing_file(tmp_path):
    output = tmp_path / "predictions.csv"
    output.write_text("keep me\n")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        ClassificationPredictionWriter(output)

    writer = ClassificationPredictionWriter(tmp_path / "later.csv")
    (tmp_path / "later.csv").write_text("written meanwhile\n")
    with pytest.raises(FileExistsError):
        writer.on_predict_start(None, None)
    stub_trainer = SimpleNamespace(world_size=1, is_global_zero=True)
    predictions = [{"track_id": torch.tensor([1]), "prediction": torch.tensor([[0.5]])}]
    with pytest.raises(FileExistsError):
        writer.write_on_epoch_end(stub_trainer, None, predictions, [])
    assert (tmp_path / "later.csv").read_text() == "written meanwhile\n"

    ClassificationPredictionWriter(output, overwrite=True).write_on_epoch_end(stub_trainer, None, predictions, [])
    assert pd.read_csv(output).to_dict("list") == {"track_id": [1], "prediction": [0.5]}


def test_predictions_of_several_dataloaders_are_concatenated():
    predictions = [
        [{"track_id": torch.tensor([0, 1]), "label": torch.tensor([[0.0], [1.0]])}],
        [{"track_id": torch.tensor([2]), "label": torch.tensor([[1.0]])}],
    ]
    table = predictions_to_dataframe(predictions)
    assert table.to_dict("list") == {"track_id": [0, 1, 2], "label": [0.0, 1.0, 1.0]}


def _gloo_writer(rank: int, init_file: str, output: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        trainer = SimpleNamespace(world_size=2, is_global_zero=rank == 0)
        predictions = [{"track_id": torch.tensor([10 * rank, 10 * rank + 1]), "prediction": torch.rand(2, 1)}]
        ClassificationPredictionWriter(output).write_on_epoch_end(trainer, None, predictions, [])
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(sys.platform != "linux", reason="forks the two ranks, which only Linux does safely")
def test_prediction_writer_gathers_every_rank_on_rank_zero(tmp_path):
    output = tmp_path / "predictions.csv"
    mp.start_processes(
        _gloo_writer, args=(str(tmp_path / "init"), str(output)), nprocs=2, start_method="fork", join=True
    )
    assert pd.read_csv(output)["track_id"].tolist() == [0, 1, 10, 11]
