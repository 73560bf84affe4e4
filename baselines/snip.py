"""SNIP (Lee et al., ICLR 2019): one-shot pruning at initialization by connection sensitivity.

Score ``|∂L/∂W ⊙ W|`` at the initialization (= ``|∂L/∂c|`` at mask c = 1 in the paper), one global top-k
keeping ``(1 − s)`` of all prunable weights across backbone and heads, then training with the fixed mask.

Multitask choice (METHODS_SPEC §3.2; not documented by the AdapMTL authors): ``L`` is the sum of the
unweighted task losses, i.e. the single-loss algorithm on the shared model. Over several batches the
gradients are summed before taking ``|g ⊙ W|`` (SNIP on a larger batch). As the official code, the
sensitivity pass runs with BatchNorm (and dropout) in inference mode; ``bn_eval=False`` uses training mode.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import Field

from trainers.masking import MaskedMethod, all_reduce_, global_topk_masks, preserved_buffers
from trainers.methods import MethodContext, MethodMetadata, MethodParams


class SNIPParams(MethodParams):
    batches: int = Field(default=1, ge=1, description="batches of the setup stream the sensitivity sums over")
    bn_eval: bool = Field(default=True, description="BatchNorm/dropout in inference mode (official SNIP)")


def snip_scores(ctx: MethodContext, originals: list[torch.Tensor], batches: int, bn_eval: bool) -> list[torch.Tensor]:
    """``|Σ_b ∂L_b/∂W ⊙ W|`` per layer, ``L_b`` = sum of the task losses on setup batch ``b``."""
    model = ctx.model
    was_training = model.training
    grads = [torch.zeros_like(w) for w in originals]
    with preserved_buffers(model):
        model.train(not bn_eval)
        try:
            for _ in range(batches):
                batch = ctx.next_batch()
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

    def setup(self, ctx: MethodContext) -> None:
        super().setup(ctx)
        assert self.masks is not None
        self.kept = self.target_keep
        if self.resuming:  # the mask comes back with the model's state_dict
            return
        p: SNIPParams = self.params  # type: ignore[assignment]
        scores = snip_scores(ctx, self.masks.originals(), p.batches, p.bn_eval)
        self.masks.set_masks(global_topk_masks(scores, self.target_keep))
