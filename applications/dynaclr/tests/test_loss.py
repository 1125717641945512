"""LOSS-01..03: NTXentHCL, its equivalence to NT-Xent, hard-negative weighting, debiasing and DDP gathering."""

import itertools
import math
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from lightning.pytorch import Trainer
from pytorch_metric_learning.distances import CosineSimilarity, LpDistance
from pytorch_metric_learning.losses import NTXentLoss
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

import dynaclr
from dynaclr.engine import ContrastiveModule, ntxent_labels, ntxent_pairs
from dynaclr.loss import NTXentHCL

from .conftest import PairsDataset, TinyEncoder


def _batch(batch_size: int = 16, dim: int = 128, seed: int = 42) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    embeddings = torch.randn(2 * batch_size, dim, generator=generator)
    return embeddings, ntxent_labels(batch_size, torch.device("cpu"))


def _reference_hcl(embeddings, labels, temperature, beta, tau_plus):
    """Robinson et al.'s estimator written out anchor by anchor, for comparison."""
    normalized = nn.functional.normalize(embeddings, dim=1)
    similarity = normalized @ normalized.T
    losses = []
    for anchor in range(len(labels)):
        negatives = similarity[anchor][labels != labels[anchor]]
        count = len(negatives)
        weights = count * torch.softmax(beta * negatives, dim=0)
        weighted = (weights * torch.exp(negatives / temperature)).sum()
        for positive in range(len(labels)):
            if positive == anchor or labels[positive] != labels[anchor]:
                continue
            numerator = torch.exp(similarity[anchor, positive] / temperature)
            negative_sum = weighted
            if tau_plus > 0:
                negative_sum = torch.clamp(
                    (weighted - tau_plus * count * numerator) / (1 - tau_plus), min=count * math.exp(-1 / temperature)
                )
            losses.append(-torch.log(numerator / (numerator + negative_sum)))
    return torch.stack(losses).mean()


def test_is_an_ntxent_loss_module_exported_from_dynaclr():
    loss = NTXentHCL()
    assert isinstance(loss, NTXentLoss)
    assert isinstance(loss, nn.Module)
    assert dynaclr.NTXentHCL is NTXentHCL


def test_defaults():
    loss = NTXentHCL()
    assert (loss.temperature, loss.beta, loss.tau_plus, loss.gather_distributed) == (0.07, 0.5, 0.0, False)


@pytest.mark.parametrize("temperature", [0.07, 0.1, 0.5])
def test_beta_zero_equals_ntxent(temperature):
    embeddings, labels = _batch()
    expected = NTXentLoss(temperature=temperature)(embeddings, labels)
    actual = NTXentHCL(temperature=temperature, beta=0.0)(embeddings, labels)
    torch.testing.assert_close(actual, expected, atol=1e-6, rtol=0)


def test_beta_zero_equals_ntxent_with_several_positives_per_label_and_a_distance():
    generator = torch.Generator().manual_seed(1)
    embeddings = torch.randn(9, 8, generator=generator)
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 3])
    for kwargs in ({}, {"distance": LpDistance()}):
        expected = NTXentLoss(temperature=0.2, **kwargs)(embeddings, labels)
        actual = NTXentHCL(temperature=0.2, beta=0.0, **kwargs)(embeddings, labels)
        torch.testing.assert_close(actual, expected, atol=1e-6, rtol=0)


def test_beta_zero_gradients_equal_ntxent():
    embeddings, labels = _batch(8, 16)
    grads = []
    for loss in (NTXentLoss(temperature=0.1), NTXentHCL(temperature=0.1, beta=0.0)):
        leaf = embeddings.clone().requires_grad_(True)
        loss(leaf, labels).backward()
        grads.append(leaf.grad)
    torch.testing.assert_close(grads[1], grads[0], atol=1e-6, rtol=0)


@pytest.mark.parametrize(("beta", "tau_plus"), [(0.5, 0.0), (2.0, 0.0), (0.0, 0.1), (1.0, 0.1), (5.0, 0.05)])
def test_matches_the_formula_of_robinson_et_al(beta, tau_plus):
    embeddings, labels = _batch(6, 16, seed=3)
    expected = _reference_hcl(embeddings, labels, temperature=0.2, beta=beta, tau_plus=tau_plus)
    actual = NTXentHCL(temperature=0.2, beta=beta, tau_plus=tau_plus)(embeddings, labels)
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-5)


def test_beta_changes_the_loss():
    embeddings, labels = _batch()
    assert not torch.isclose(NTXentHCL(0.1, beta=0.5)(embeddings, labels), NTXentHCL(0.1, beta=0.0)(embeddings, labels))


def test_hard_negative_raises_the_loss():
    embeddings, labels = _batch(8, 32)
    embeddings[1] = embeddings[0] + 0.01 * torch.randn(32, generator=torch.Generator().manual_seed(0))
    assert NTXentHCL(0.1, beta=1.0)(embeddings, labels) > NTXentHCL(0.1, beta=0.0)(embeddings, labels)


def test_loss_grows_monotonically_with_beta():
    embeddings, labels = _batch()
    losses = [NTXentHCL(0.1, beta=beta)(embeddings, labels).item() for beta in (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)]
    assert all(later > earlier for earlier, later in itertools.pairwise(losses))


class _GivenSimilarity(CosineSimilarity):
    """A distance that returns a fixed (leaf) similarity matrix, to read gradients per similarity."""

    def __init__(self, similarity: torch.Tensor) -> None:
        super().__init__()
        self.similarity = similarity

    def forward(self, query_emb: torch.Tensor, ref_emb: torch.Tensor | None = None) -> torch.Tensor:
        return self.similarity


def test_hard_negatives_weigh_more_as_beta_grows():
    """Sample 1 is a hard negative of anchor 0: its similarity gradient grows with beta, the easy ones' shrink."""
    batch_size = 8
    generator = torch.Generator().manual_seed(0)
    embeddings = nn.functional.normalize(torch.randn(2 * batch_size, 32, generator=generator), dim=1)
    embeddings[1] = nn.functional.normalize(embeddings[0] + 0.3 * torch.randn(32, generator=generator), dim=0)
    labels = ntxent_labels(batch_size, torch.device("cpu"))
    easy = [k for k in range(2 * batch_size) if k not in (0, 1, batch_size)]
    hard_grads, easy_grads = [], []
    for beta in (0.0, 1.0, 2.0, 4.0, 8.0):
        similarity = (embeddings @ embeddings.T).requires_grad_(True)
        NTXentHCL(0.5, beta=beta, distance=_GivenSimilarity(similarity))(embeddings, labels).backward()
        hard_grads.append(similarity.grad[0, 1].item())
        easy_grads.append(similarity.grad[0, easy].mean().item())
    assert all(later > earlier for earlier, later in itertools.pairwise(hard_grads))
    assert all(later < earlier for earlier, later in itertools.pairwise(easy_grads))


def test_scalar_with_non_zero_gradients_through_a_model():
    torch.manual_seed(0)
    model = nn.Linear(16, 8)
    inputs = torch.randn(16, 16)
    loss = NTXentHCL(temperature=0.1, beta=0.5, tau_plus=0.1)(model(inputs), ntxent_labels(8, torch.device("cpu")))
    assert loss.shape == ()
    assert loss.requires_grad
    loss.backward()
    assert model.weight.grad.abs().sum() > 0


def test_weights_are_not_detached():
    """With beta > 0 the gradient differs from that of the same weights held constant."""
    embeddings, labels = _batch(4, 8)
    leaf = embeddings.clone().requires_grad_(True)
    NTXentHCL(0.2, beta=2.0)(leaf, labels).backward()
    normalized = nn.functional.normalize(embeddings, dim=1)
    with torch.no_grad():
        similarity = normalized @ normalized.T
        negative = labels[:, None] != labels[None, :]
        weights = torch.softmax((2.0 * similarity).masked_fill(~negative, -math.inf), dim=1) * negative.sum(1, True)
    detached = embeddings.clone().requires_grad_(True)
    unit = nn.functional.normalize(detached, dim=1)
    logits = unit @ unit.T / 0.2
    positive = logits[torch.arange(8), (torch.arange(8) + 4) % 8]
    negative_sum = (weights * torch.exp(logits) * negative).sum(1)
    (-torch.log(torch.exp(positive) / (torch.exp(positive) + negative_sum))).mean().backward()
    assert not torch.allclose(leaf.grad, detached.grad, atol=1e-6)


def test_temperature_changes_the_loss():
    embeddings, labels = _batch()
    assert not torch.isclose(NTXentHCL(0.05)(embeddings, labels), NTXentHCL(0.5)(embeddings, labels))


def test_tau_plus_changes_the_loss_and_stays_finite():
    embeddings, labels = _batch()
    plain = NTXentHCL(0.1, beta=0.5)(embeddings, labels)
    for tau_plus in (0.01, 0.1, 0.5, 0.9):
        debiased = NTXentHCL(0.1, beta=0.5, tau_plus=tau_plus)(embeddings, labels)
        assert torch.isfinite(debiased)
        assert not torch.isclose(debiased, plain)


def test_debiased_negative_sum_is_bounded_below_for_identical_embeddings():
    """Every similarity is 1: the debiased estimate would be negative; the bound N * e^(-1/t) keeps it finite."""
    embeddings = torch.ones(8, 4)
    loss = NTXentHCL(0.1, beta=1.0, tau_plus=0.9)(embeddings, ntxent_labels(4, torch.device("cpu")))
    assert torch.isfinite(loss)
    assert loss >= 0


def test_single_pair_gives_zero_without_nan():
    leaf = torch.randn(2, 8, requires_grad=True)
    loss = NTXentHCL(0.07, beta=0.5, tau_plus=0.1)(leaf, ntxent_labels(1, torch.device("cpu")))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(leaf.grad, torch.zeros_like(leaf))


def test_large_batch_is_finite_and_positive():
    embeddings, labels = _batch(128, 64)
    for beta in (0.0, 0.5, 5.0):
        loss = NTXentHCL(0.07, beta=beta)(embeddings, labels)
        assert torch.isfinite(loss)
        assert loss > 0


def test_extreme_similarities_are_stable():
    """Temperature 0.01 (logits up to 100) with a near-duplicate negative: no overflow, finite gradients."""
    embeddings, labels = _batch(8, 16)
    embeddings[1] = embeddings[0]
    leaf = embeddings.clone().requires_grad_(True)
    loss = NTXentHCL(0.01, beta=10.0, tau_plus=0.1)(leaf, labels)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(leaf.grad).all()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"temperature": 0.0}, "temperature"), ({"beta": -0.1}, "beta"), ({"tau_plus": 1.0}, "tau_plus")],
)
def test_invalid_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        NTXentHCL(**kwargs)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    embeddings, labels = _batch()
    for beta, tau_plus in ((0.0, 0.0), (0.5, 0.1)):
        loss = NTXentHCL(0.1, beta=beta, tau_plus=tau_plus)
        torch.testing.assert_close(
            loss(embeddings.cuda(), labels.cuda()).cpu(), loss(embeddings, labels), atol=1e-5, rtol=1e-5
        )
    torch.testing.assert_close(
        NTXentHCL(0.1, beta=0.0)(embeddings.cuda(), labels.cuda()).cpu(),
        NTXentLoss(0.1)(embeddings.cuda(), labels.cuda()).cpu(),
        atol=1e-6,
        rtol=0,
    )


# Two gloo processes: rank r holds anchors/positives RANK_ROWS[r] of one global batch (unequal sizes).
RANK_ROWS = ((0, 3), (3, 8))
GLOBAL_LINEAGE = torch.tensor([0, 1, 2, 1, 4, 0, 6, 6])
"""Lineages of the global batch: 0 and 1 have anchors on both ranks, 6 twice on rank 1."""
GLOBAL_BATCH, INPUT_DIM, EMBEDDING_DIM = 8, 12, 6
HCL_ARGUMENTS = {"temperature": 0.2, "beta": 1.0, "tau_plus": 0.1}


def _global_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(7)
    return torch.randn(GLOBAL_BATCH, INPUT_DIM, generator=generator), torch.randn(
        GLOBAL_BATCH, INPUT_DIM, generator=generator
    )


def _model() -> nn.Linear:
    torch.manual_seed(11)
    return nn.Linear(INPUT_DIM, EMBEDDING_DIM)


def _gather_worker(rank: int, init_file: str, output: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        anchor, positive = (inputs[slice(*RANK_ROWS[rank])] for inputs in _global_inputs())
        model = DistributedDataParallel(_model())
        embeddings = model(torch.cat([anchor, positive]))
        labels = ntxent_labels(len(anchor), torch.device("cpu"))
        loss = NTXentHCL(gather_distributed=True, **HCL_ARGUMENTS)(embeddings, labels)
        loss.backward()
        local = NTXentHCL(**HCL_ARGUMENTS)(embeddings.detach(), labels)
        module = ContrastiveModule(nn.Identity(), loss_function=NTXentHCL(gather_distributed=True, **HCL_ARGUMENTS))
        projected = model.module(anchor).detach(), model.module(positive).detach()
        through_module = module._contrastive_loss(*projected, None, None)
        gathering_module = ContrastiveModule(nn.Identity(), loss_function=NTXentHCL(**HCL_ARGUMENTS))
        module_gather = gathering_module._contrastive_loss(*projected, None, None)
        lineage = GLOBAL_LINEAGE[slice(*RANK_ROWS[rank])]
        module_lineage = gathering_module._contrastive_loss(*projected, None, lineage)
        with pytest.warns(UserWarning, match="rows of an anchor's own lineage stay among its negatives"):
            self_gathering_lineage = module._contrastive_loss(*projected, None, lineage)
        results = {"loss": loss.detach(), "grad": model.module.weight.grad, "local": local, "module": through_module}
        torch.save(
            {
                **results,
                "module_gather": module_gather,
                "module_lineage": module_lineage,
                "self_gathering_lineage": self_gathering_lineage,
            },
            f"{output}.{rank}",
        )
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(sys.platform != "linux", reason="forks the two ranks, which only Linux does safely")
def test_gather_distributed_equals_the_single_process_loss_on_the_global_batch(tmp_path):
    output = tmp_path / "rank"
    mp.start_processes(
        _gather_worker, args=(str(tmp_path / "init"), str(output)), nprocs=2, start_method="fork", join=True
    )
    ranks = [torch.load(f"{output}.{rank}") for rank in range(2)]
    anchor, positive = _global_inputs()
    model = _model()
    expected = NTXentHCL(**HCL_ARGUMENTS)(
        model(torch.cat([anchor, positive])), ntxent_labels(GLOBAL_BATCH, torch.device("cpu"))
    )
    expected.backward()
    for result in ranks:
        torch.testing.assert_close(result["loss"], expected.detach(), atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(result["module"], expected.detach(), atol=1e-6, rtol=1e-6)
        # ContrastiveModule's own gather (all_gather_negatives) gives the same global-batch loss
        torch.testing.assert_close(result["module_gather"], expected.detach(), atol=1e-6, rtol=1e-6)
        # and excludes same-lineage negatives across ranks as on one process
        expected_lineage = NTXentHCL(**HCL_ARGUMENTS)(
            model(torch.cat([anchor, positive])).detach(),
            ntxent_labels(GLOBAL_BATCH, torch.device("cpu")),
            ntxent_pairs(GLOBAL_LINEAGE),
        )
        torch.testing.assert_close(result["module_lineage"], expected_lineage, atol=1e-6, rtol=1e-6)
        assert not torch.isclose(result["module_lineage"], expected.detach())
        # a loss that gathers itself gets the labels only (and the run is warned)
        torch.testing.assert_close(result["self_gathering_lineage"], expected.detach(), atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(result["grad"], model.weight.grad, atol=1e-6, rtol=1e-5)
        assert not torch.isclose(result["local"], expected.detach())


def test_gather_distributed_without_a_process_group_is_the_local_loss():
    embeddings, labels = _batch(8, 16)
    torch.testing.assert_close(
        NTXentHCL(0.1, gather_distributed=True)(embeddings, labels), NTXentHCL(0.1)(embeddings, labels)
    )


def test_drop_in_loss_of_contrastive_module_trains(tmp_path):
    module = ContrastiveModule(TinyEncoder(), loss_function=NTXentHCL(temperature=0.1, beta=0.5), lr=1e-2)
    before = [parameter.detach().clone() for parameter in module.parameters()]
    trainer = Trainer(
        accelerator="cpu",
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(module, DataLoader(PairsDataset(), batch_size=4), DataLoader(PairsDataset(), batch_size=4))
    assert trainer.state.finished
    assert math.isfinite(trainer.callback_metrics["loss/val"].item())
    assert any(not torch.equal(old, new) for old, new in zip(before, module.parameters(), strict=True))
