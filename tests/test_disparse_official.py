"""DiSparse-dynamic's mask update against a transcription of the official update (dynamic_prune.py).

The transcription below re-states, on ``torch.nn.utils.prune`` as the official code uses it, one update of
``disparse_dynamic_train`` at an iteration ``i`` with ``i % INT == 0 and i < END``:

1. ``dynamic_disparse_prune``: per layer, ``l1_unstructured`` with amount ``1 − d_l/(1 − s_l)·(1 − r)``
   (of the alive weights, clipped to [0, 1]);
2. ``dynamic_disparse``: a copy of the network with every mask set to 1 (its forward uses ``weight_orig``,
   i.e. the stored values of pruned weights too); for each part of the batch and each task, the task's loss
   alone, backward, ``G_k += |∂L_k/∂weight_orig|`` over backbone ∪ head_k;
3. per task and layer: grow the ``(s_l − (1 − d_l))·N_l`` pruned positions of largest ``G_k``;
4. backbone mask |= OR of the tasks' growth, head_k mask |= task k's; weights keep their stored values.

Both sides start from the same state, which a few training steps made non-trivial: pruned positions hold
stored values that weight decay has moved, and Adam has run.
"""

from __future__ import annotations

import math

import pytest
import torch
from test_baselines_kit import TASKS, TinyMTL, batch_stream, make_ctx, mse_losses, run_loop
from torch.nn.utils import prune

from trainers.methods import build_method
from trainers.sparsity import prunable_weights


def _official_update(net: torch.nn.Module, batch: dict, density: dict[str, float], rate: float,
                     splits: int) -> None:
    """One official mask update on ``net`` (a plain model under torch pruning), in place."""
    layers = {name: module for comp in prunable_weights(net).values() for name, module in comp}
    # (1) magnitude prune of the alive weights to d_l·(1 − r)
    for name, layer in layers.items():
        sparsity = float((layer.weight_orig * layer.weight_mask == 0).sum()) / layer.weight_orig.numel()
        amount = 1 - (density[name] / (1 - sparsity)) * (1 - rate)
        with torch.no_grad():  # the effective weight the pruner ranks (official: from the last forward)
            layer.weight = layer.weight_orig * layer.weight_mask
        prune.l1_unstructured(layer, "weight", amount=min(max(amount, 0.0), 1.0))
    after = {n: float((m.weight_orig * m.weight_mask == 0).sum()) / m.weight_orig.numel() for n, m in layers.items()}
    # (2) per-task gradients of the all-ones-mask copy (stored values everywhere)
    probe = TinyMTL()  # the official deepcopy_pruned_net: identity pruning, then the state dict
    probe_layers = {name: module for comp in prunable_weights(probe).values() for name, module in comp}
    for layer in probe_layers.values():
        prune.identity(layer, "weight")
    probe.load_state_dict(net.state_dict())
    for layer in probe_layers.values():
        layer.weight_mask = torch.ones_like(layer.weight_orig)
    probe.train()
    grads: dict[str, dict[str, torch.Tensor]] = {t: {} for t in TASKS}
    size = batch["image"].shape[0]
    for b in range(splits):
        part = {k: v[b * size // splits:(b + 1) * size // splits] for k, v in batch.items()}
        for task in TASKS:
            probe.zero_grad()
            loss = mse_losses(probe(part["image"]), part)[task]
            loss.backward()
            for name, layer in probe_layers.items():
                if name.startswith("backbone") or name.startswith(f"heads.{task}."):
                    g = layer.weight_orig.grad.abs()
                    grads[task][name] = grads[task].get(name, 0) + g
    # (3) growth per task and layer among pruned positions, (4) union in the backbone, own head otherwise
    for name, layer in layers.items():
        mask = layer.weight_mask.bool()
        grow = torch.zeros_like(mask)
        for task in TASKS:
            if name not in grads[task]:
                continue
            n_grow = round((after[name] - (1 - density[name])) * mask.numel())
            if n_grow <= 0:
                continue
            stat = (grads[task][name] * (~mask)).flatten()
            threshold = torch.topk(stat, n_grow, sorted=True).values[-1]
            grow |= (stat >= threshold).reshape(mask.shape)
        layer.weight_mask = (mask | grow).float()


def _snapshot_into_torch_prune(model: torch.nn.Module, method) -> torch.nn.Module:
    """A plain TinyMTL whose weight_orig/weight_mask are our stored values and masks."""
    net = TinyMTL()
    plain = {}
    for key, value in model.state_dict().items():
        if key.endswith(".parametrizations.weight.0.mask"):
            continue
        plain[key.replace(".parametrizations.weight.original", ".weight")] = value.clone()
    net.load_state_dict(plain)
    layers = {name: module for comp in prunable_weights(net).values() for name, module in comp}
    for ours in method.masks.layers:
        prune.custom_from_mask(layers[ours.name], "weight", ours.mask.clone())
    return net


def _prepared(pruned_values: str = "keep"):
    torch.manual_seed(0)
    model = TinyMTL()
    method = build_method("disparse", {"update_every": 4, "end_fraction": 0.6, "pruned_values": pruned_values})
    ctx = make_ctx(model, 0.8, iterations=30, weight_decay=0.1)
    method.setup(ctx)
    run_loop(method, ctx, steps=3)  # the update of i = 0, then three Adam steps with coupled weight decay
    return model, method


def test_update_matches_the_official_transcription() -> None:
    model, method = _prepared()
    moved = [ly.original[~ly.mask] for ly in method.masks.layers]
    assert any(m.numel() and m.abs().sum() > 0 for m in moved), "pruned positions must hold stored values"
    official = _snapshot_into_torch_prune(model, method)
    batch = batch_stream(5)()
    density = {ly.name: k / ly.numel for ly, k in zip(method.masks.layers, method.layer_keep)}
    rate = 0.5 * (1 + math.cos(math.pi * 4 / method.end)) / 2

    before = [(ly.mask.clone(), ly.original.detach().clone()) for ly in method.masks.layers]
    method.before_forward(4, batch)  # our update of iteration 4, on the iteration's own batch
    _official_update(official, batch, density, rate, splits=2)

    theirs = {name: module for comp in prunable_weights(official).values() for name, module in comp}
    regrown = 0
    for layer, (old_mask, old_values) in zip(method.masks.layers, before):
        ref = theirs[layer.name]
        assert torch.equal(layer.mask, ref.weight_mask.bool()), layer.name
        torch.testing.assert_close(layer.original, ref.weight_orig, rtol=0, atol=0)
        # the forward pass sees exactly zero at every pruned position
        assert torch.all(layer.module.weight[~layer.mask] == 0), layer.name
        # regrown weights come back with the values they had while pruned
        back = layer.mask & ~old_mask
        assert torch.equal(layer.module.weight[back], old_values[back])
        regrown += int((layer.module.weight[back] != 0).sum())
    assert regrown > 0


def test_zero_option_is_the_sparse_network_and_differs_from_official() -> None:
    model, method = _prepared("zero")
    for layer in method.masks.layers:
        assert torch.all(layer.original[~layer.mask] == 0), layer.name
    official = _snapshot_into_torch_prune(model, method)
    # give the official copy the stored values a torch-pruned run would have kept: its regrowth gradients are
    # then taken on another network, so the masks must differ somewhere
    keep_model, keep_method = _prepared("keep")
    theirs = {name: module for comp in prunable_weights(official).values() for name, module in comp}
    with torch.no_grad():
        for ours, kept in zip(method.masks.layers, keep_method.masks.layers):
            theirs[ours.name].weight_orig.copy_(kept.original)
    batch = batch_stream(5)()
    density = {ly.name: k / ly.numel for ly, k in zip(method.masks.layers, method.layer_keep)}
    rate = 0.5 * (1 + math.cos(math.pi * 4 / method.end)) / 2
    method.before_forward(4, batch)
    _official_update(official, batch, density, rate, splits=2)
    same = all(torch.equal(ly.mask, theirs[ly.name].weight_mask.bool()) for ly in method.masks.layers)
    assert not same
    for layer in method.masks.layers:
        assert torch.all(layer.original[~layer.mask] == 0)


def test_regrowth_uses_the_training_batch_and_dataset_defaults() -> None:
    torch.manual_seed(0)
    model = TinyMTL()
    method = build_method("disparse", {"end_fraction": 0.6})
    ctx = make_ctx(model, 0.8, iterations=30)
    drawn = []
    inner = ctx.next_batch
    ctx.next_batch = lambda: drawn.append(1) or inner()
    ctx.dataset = "taskonomy"
    method.setup(ctx)
    assert method.settings["update_every"] == 250 and method.settings["grad_splits"] == 8
    ctx.dataset = "nyuv2"
    method.setup(ctx)
    assert method.settings["update_every"] == 50 and method.settings["grad_splits"] == 2
    run_loop(method, ctx, steps=2)
    assert method.updates == 1 and drawn == []  # the i = 0 update scored the training batch
    assert ctx.compute.scoring_forward_images == 4 and ctx.compute.scoring_backward_images == 8


@pytest.mark.parametrize(("dataset", "expected"), [
    ("nyuv2", {"segment_semantic": 1.0, "normal": 20.0, "depth_zbuffer": 1.0}),
    ("taskonomy", {"segment_semantic": 1.0, "normal": 3.0, "depth_zbuffer": 2.0}),
    ("synthetic_scenes", {"segment_semantic": 1.0, "normal": 1.0, "depth_zbuffer": 1.0}),
])
def test_official_task_weights_per_dataset(dataset: str, expected: dict[str, float]) -> None:
    from baselines.disparse import DiSparseParams, resolved_settings

    got = resolved_settings(DiSparseParams(), dataset, list(expected))["task_weights"]
    assert got == expected
    equal = resolved_settings(DiSparseParams(task_weights="equal"), dataset, list(expected))["task_weights"]
    assert set(equal.values()) == {1.0}
