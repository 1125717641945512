"""``NTXentHCL``: NT-Xent with hard-negative concentration and optional debiasing.

The loss of Robinson et al., "Contrastive Learning with Hard Negative Samples" (ICLR 2021),
as a drop-in subclass of pytorch-metric-learning's ``NTXentLoss``, so that
``ContrastiveModule(loss_function=NTXentHCL(...))`` calls it as
``loss(cat(anchor, positive), labels)``.
"""

from __future__ import annotations

import math

import torch
from pytorch_metric_learning.losses import NTXentLoss
from pytorch_metric_learning.utils import common_functions as c_f
from pytorch_metric_learning.utils import loss_and_miner_utils as lmu
from torch import Tensor

from dynaclr._distributed import gather_rows, world_size

__all__ = ["NTXentHCL"]


class NTXentHCL(NTXentLoss):
    r"""NT-Xent whose negatives are reweighted towards the hard ones.

    For a positive pair ``(a, p)`` with raw similarities ``s_ap`` and ``s_ak`` to the
    ``N_a`` negatives ``k`` of ``a`` (rows with another label):

    .. math::

        w_{ak} = N_a \frac{e^{\beta s_{ak}}}{\sum_{k'} e^{\beta s_{ak'}}}, \qquad
        N_g = \sum_k w_{ak} e^{s_{ak}/t}, \qquad
        \ell_{ap} = -\log \frac{e^{s_{ap}/t}}{e^{s_{ap}/t} + N_g}

    and the loss is the mean of :math:`\ell_{ap}` over all positive pairs. The weights sum to
    ``N_a``, so ``beta = 0`` gives plain NT-Xent (equal to ``NTXentLoss`` to float precision);
    the larger ``beta``, the more the negatives most similar to the anchor count. ``beta``
    multiplies the raw similarity, not ``s / t`` (Robinson et al.'s code uses
    ``exp(beta_paper * s / t)``, i.e. ``beta = beta_paper / t``). The weights are not
    detached: gradients flow through them.

    With ``tau_plus > 0`` (the class prior of a negative actually being a positive), the
    debiased estimator of Robinson et al. replaces :math:`N_g`:

    .. math::

        N_g = \max\left(\frac{-\tau^+ N_a e^{s_{ap}/t} + \sum_k w_{ak} e^{s_{ak}/t}}{1 - \tau^+},
        \; N_a e^{-1/t}\right)

    (the lower bound is the value at the minimum cosine similarity -1).

    Every exponential is computed after subtracting, per pair, the largest of ``s_ap / t``
    and the log of the weighted negative sum (detached); masked entries are ``-inf``. The
    similarity matrix is ``O(n^2)`` for ``n`` embeddings (``NTXentLoss`` builds an
    ``O(n^3)`` pair mask). A batch without negatives (e.g. a single positive pair) gives a
    loss of 0.

    Parameters
    ----------
    temperature : float
        Softmax temperature ``t`` (> 0).
    beta : float
        Hard-negative concentration (>= 0); 0 disables the reweighting.
    tau_plus : float
        Positive-class prior for debiasing, in ``[0, 1)``; 0 disables it.
    gather_distributed : bool
        Under ``torch.distributed`` with several processes, all-gather the embeddings (with
        gradients) and labels of every rank before computing the loss, so that each rank sees
        the negatives of the global batch. Labels are offset per rank, so pairs stay within
        a rank's own samples. Leave it False inside
        :class:`dynaclr.engine.ContrastiveModule`, which gathers projections itself
        (``all_gather_negatives=True``); when it is True the module skips its own gather.
    **kwargs
        Passed to ``NTXentLoss`` (``distance``, ``reducer``, ``embedding_regularizer``...).
        With a non-inverted distance (e.g. ``LpDistance``) the negated distance is the
        similarity.

    Raises
    ------
    ValueError
        If ``temperature <= 0``, ``beta < 0`` or ``tau_plus`` is outside ``[0, 1)``.

    Examples
    --------
    >>> import torch
    >>> loss = NTXentHCL(temperature=0.1, beta=0.5)
    >>> anchor, positive = torch.randn(8, 16), torch.randn(8, 16)
    >>> labels = torch.arange(8).repeat(2)
    >>> loss(torch.cat([anchor, positive]), labels).shape
    torch.Size([])
    """

    def __init__(
        self,
        temperature: float = 0.07,
        beta: float = 0.5,
        tau_plus: float = 0.0,
        gather_distributed: bool = False,
        **kwargs,
    ) -> None:
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}.")
        if not beta >= 0:
            raise ValueError(f"beta must be >= 0, got {beta}.")
        if not 0 <= tau_plus < 1:
            raise ValueError(f"tau_plus must be in [0, 1), got {tau_plus}.")
        super().__init__(temperature=temperature, **kwargs)
        self.beta = beta
        self.tau_plus = tau_plus
        self.gather_distributed = gather_distributed
        self.add_to_recordable_attributes(list_of_names=["beta", "tau_plus"], is_stat=False)

    def forward(
        self,
        embeddings: Tensor,
        labels: Tensor | None = None,
        indices_tuple: tuple[Tensor, ...] | None = None,
        ref_emb: Tensor | None = None,
        ref_labels: Tensor | None = None,
    ) -> Tensor:
        """Return the mean loss over the positive pairs of ``labels``.

        Parameters
        ----------
        embeddings : Tensor
            ``(n, D)``; for NT-Xent ``cat(anchor, positive)``.
        labels : Tensor, optional
            ``(n,)``; rows with equal labels are positives, the others negatives.
        indices_tuple : tuple of Tensor, optional
            Mined pairs or triplets, as for any pytorch-metric-learning loss.
        ref_emb, ref_labels : Tensor, optional
            Reference embeddings and labels to pair ``embeddings`` with.

        Returns
        -------
        Tensor
            Scalar loss.

        Raises
        ------
        ValueError
            If ``gather_distributed`` applies and ``labels`` is missing, or ``indices_tuple``
            or ``ref_emb`` is given (they index one rank's rows).
        """
        if self.gather_distributed and world_size() > 1:
            if labels is None or indices_tuple is not None or ref_emb is not None:
                raise ValueError(
                    "gather_distributed=True needs labels and no indices_tuple or ref_emb (they index one rank's rows)."
                )
            embeddings, labels = _gather_across_ranks(embeddings, labels)
        return super().forward(embeddings, labels, indices_tuple, ref_emb, ref_labels)

    def compute_loss(
        self,
        embeddings: Tensor,
        labels: Tensor | None,
        indices_tuple: tuple[Tensor, ...] | None,
        ref_emb: Tensor,
        ref_labels: Tensor | None,
    ) -> dict:
        """Per-positive-pair losses, in pytorch-metric-learning's loss-dict form."""
        c_f.labels_or_indices_tuple_required(labels, indices_tuple)
        anchors, positives, negative_anchors, negatives = lmu.convert_to_pairs(indices_tuple, labels, ref_labels)
        pairs = (anchors, positives, negative_anchors, negatives)
        if all(len(x) <= 1 for x in pairs) or len(anchors) == 0 or len(negative_anchors) == 0:
            return self.zero_losses()
        similarity = self.distance(embeddings, ref_emb)
        if not self.distance.is_inverted:
            similarity = -similarity
        dtype = similarity.dtype
        is_negative = torch.zeros_like(similarity, dtype=torch.bool)
        is_negative[negative_anchors, negatives] = True
        n_negatives = is_negative.sum(dim=1)
        has_negatives = (n_negatives > 0).unsqueeze(1)
        logits = similarity / self.temperature
        if self.beta > 0:
            hardness = _masked(self.beta * similarity, is_negative, has_negatives)
            log_weights = (
                torch.log(n_negatives.clamp(min=1).to(dtype)).unsqueeze(1)
                + self.beta * similarity
                - torch.logsumexp(hardness, dim=1, keepdim=True)
            )
            logits_negative = logits + log_weights
        else:
            logits_negative = logits
        negative_lse = torch.logsumexp(_masked(logits_negative, is_negative, has_negatives), dim=1)
        negative_lse = torch.where(has_negatives.squeeze(1), negative_lse, torch.full_like(negative_lse, -math.inf))

        positive_logit = logits[anchors, positives]
        anchor_negative_lse = negative_lse[anchors]
        shift = torch.maximum(positive_logit, anchor_negative_lse).detach()
        numerator = torch.exp(positive_logit - shift)
        negative_sum = torch.exp(anchor_negative_lse - shift)
        if self.tau_plus > 0:
            count = n_negatives[anchors].to(dtype)
            debiased = (negative_sum - self.tau_plus * count * numerator) / (1 - self.tau_plus)
            negative_sum = torch.maximum(debiased, count * torch.exp(-1.0 / self.temperature - shift))
        losses = -torch.log(numerator / (numerator + negative_sum) + c_f.small_val(dtype))
        return {"loss": {"losses": losses, "indices": (anchors, positives), "reduction_type": "pos_pair"}}


def _masked(values: Tensor, keep: Tensor, rows_with_any: Tensor) -> Tensor:
    """``values`` with entries outside ``keep`` at -inf; rows with no kept entry all 0 (no NaN)."""
    return values.masked_fill(~keep, -math.inf).masked_fill(~rows_with_any, 0.0)


def _gather_across_ranks(embeddings: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Concatenate every rank's rows in rank order, shifting labels so that ranks' labels are distinct."""
    labels = labels.to(embeddings.device)
    all_embeddings, all_labels = gather_rows(embeddings), gather_rows(labels)
    sizes = gather_rows(torch.tensor([labels.shape[0]], device=labels.device))
    rank_of_row = torch.repeat_interleave(torch.arange(len(sizes), device=labels.device), sizes)
    smallest = all_labels.min()
    span = all_labels.max() - smallest + 1
    return all_embeddings, all_labels - smallest + rank_of_row * span
