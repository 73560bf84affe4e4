"""SNIP (Lee et al., ICLR 2019): one-shot pruning at initialization by connection sensitivity.

Score ``|∂L/∂W ⊙ W|`` at the initialization (= ``|∂L/∂c|`` at mask c = 1 in the paper), one global top-k
keeping ``(1 − s)`` of all prunable weights across backbone and heads, then training with the fixed mask.

Multitask choice (METHODS_SPEC §3.2; not documented by the AdapMTL authors): ``L`` is the sum of the
unweighted task losses, i.e. the single-loss algorithm on the shared model. Over several batches the
gradients are summed before taking ``|g ⊙ W|`` (SNIP on a larger batch). As the official code, the
sensitivity pass runs with BatchNorm (and dropout) in inference mode; ``bn_eval=False`` uses training mode.

Biases (``include_biases``, default on): the official SNIP masks every tensor whose name contains 'w' or 'b',
so the biases of the conv/linear layers take part in the same global ranking (``|g ⊙ b|``) and the kept count
``round((1 − s)·N)`` is taken over weights and biases together. The weights' sparsity then lands within
``#biases / #weights`` of the target (≈ 0.05 % on DeepLab-ResNet34 + 3 ASPP heads); masked biases stay zero
like masked weights. ``include_biases: false`` ranks the weights alone and hits the target exactly.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from pydantic import Field
from torch.nn.utils import parametrize

from trainers.masking import (
    MaskedMethod,
    MaskSet,
    WeightMask,
    all_reduce_,
    global_topk_masks,
    keep_count,
    preserved_buffers,
)
from trainers.methods import MethodContext, MethodMetadata, MethodParams


class SNIPParams(MethodParams):
    batches: int = Field(default=1, ge=1, description="batches of the setup stream the sensitivity sums over")
    bn_eval: bool = Field(default=True, description="BatchNorm/dropout in inference mode (official SNIP)")
    include_biases: bool = Field(default=True, description=(
        "rank and mask the conv/linear biases with the weights (official SNIP masks every 'w' and 'b' tensor)"))


def snip_scores(ctx: MethodContext, originals: list[torch.Tensor], batches: int, bn_eval: bool) -> list[torch.Tensor]:
    """``|Σ_b ∂L_b/∂T ⊙ T|`` per tensor ``T`` of ``originals``, ``L_b`` = sum of the task losses on batch ``b``."""
    model = ctx.model
    was_training = model.training
    grads = [torch.zeros_like(w) for w in originals]
    with preserved_buffers(model):
        model.train(not bn_eval)
        try:
            for _ in range(batches):
                batch = ctx.next_batch()
                images = int(batch["image"].shape[0])
                ctx.compute.add_scoring(forward_images=images, backward_images=images)
                outputs = model(batch["image"])
                loss = sum(ctx.task_losses(outputs, batch).values())
                got = torch.autograd.grad(loss, originals, allow_unused=True)
                for acc, g in zip(grads, got, strict=True):
                    if g is not None:
                        acc.add_(g)
        finally:
            model.train(was_training)
    all_reduce_(grads)
    with torch.no_grad():
        return [(g * w).abs() for g, w in zip(grads, originals, strict=True)]


class SNIP(MaskedMethod):
    name: ClassVar[str] = "snip"
    Params = SNIPParams
    # The reference the AdapMTL paper gives for SNIP ([26]): the 2018 arXiv version (published at ICLR 2019).
    metadata = MethodMetadata(
        title="SNIP: Single-shot Network Pruning based on Connection Sensitivity",
        year=2018,
        bibtex_key="lee2018snip",
        display_name="SNIP",
        bibtex=(
            "@article{lee2018snip, title={{SNIP}: Single-shot Network Pruning based on Connection "
            "Sensitivity}, author={Lee, Namhoon and Ajanthan, Thalaiyasingam and Torr, Philip H. S.}, "
            "journal={arXiv preprint arXiv:1810.02340}, year={2018}, eprint={1810.02340}, archiveprefix={arXiv}}"
        ),
    )

    def __init__(self, params: Any = None) -> None:
        super().__init__(params)
        self.bias_masks: list[tuple[torch.nn.Module, WeightMask]] = []

    def setup(self, ctx: MethodContext) -> None:
        super().setup(ctx)
        assert self.masks is not None and ctx.target_sparsity is not None
        p: SNIPParams = self.params  # type: ignore[assignment]
        if p.include_biases:
            self.bias_masks = install_bias_masks(self.masks)
        if self.resuming:  # the masks come back with the model's state_dict
            self.kept = int(self.masks.kept().item())
            return
        biases = [bias_original(module) for module, _ in self.bias_masks]
        scores = snip_scores(ctx, self.masks.originals() + biases, p.batches, p.bn_eval)
        n_weights = len(self.masks.layers)
        total = self.masks.total + sum(b.numel() for b in biases)
        keep = global_topk_masks(scores, keep_count(total, ctx.target_sparsity))
        self.masks.set_masks(keep[:n_weights])
        with torch.no_grad():
            for (module, mask), new in zip(self.bias_masks, keep[n_weights:], strict=True):
                mask.mask.copy_(new)
                bias_original(module).masked_fill_(~new, 0)
        self.kept = int(self.masks.kept().item())  # one sync, at setup

    def after_optimizer_step(self, step: int) -> None:
        super().after_optimizer_step(step)
        with torch.no_grad():
            for module, mask in self.bias_masks:
                original = bias_original(module)
                original.mul_(mask.multiplier(original.dtype))


def install_bias_masks(masks: MaskSet) -> list[tuple[torch.nn.Module, WeightMask]]:
    """An all-ones :class:`WeightMask` on the bias of every masked layer that has one (idempotent)."""
    out = []
    for layer in masks.layers:
        module = layer.module
        if getattr(module, "bias", None) is None:
            continue
        if not parametrize.is_parametrized(module, "bias"):
            bias = module.bias
            parametrize.register_parametrization(module, "bias", WeightMask(bias.shape, bias.device))
        out.append((module, module.parametrizations.bias[0]))  # type: ignore[union-attr,index]
    return out


def bias_original(module: torch.nn.Module) -> torch.Tensor:
    return module.parametrizations.bias.original  # type: ignore[union-attr]
