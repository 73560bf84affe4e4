"""DiSparse: the unanimous rule on a hand-built two-task case; static and dynamic end at the target."""

from __future__ import annotations

import copy

import pytest
import torch
from test_baselines_kit import TinyMTL, batch_stream, make_ctx, mse_losses, run_loop, zero_total

from baselines.disparse import _Ranks, exact_unanimous_counts, unanimous_masks
from trainers.masking import keep_count
from trainers.methods import build_method
from trainers.sparsity import prunable_weights


def test_unanimous_rule_hand_built() -> None:
    # backbone: 6 weights; each task ranks it in opposite order; heads of 2 weights each
    imp_a = torch.tensor([6.0, 5, 4, 3, 2, 1, 10, 0])  # Θ_a = backbone ++ head_a
    imp_b = torch.tensor([1.0, 2, 3, 4, 5, 6, 0, 10])  # Θ_b = backbone ++ head_b
    ranks = _Ranks({"a": imp_a, "b": imp_b}, backbone_numel=6)
    for target in range(0, 11):
        counts = exact_unanimous_counts(ranks, target)
        keep = ranks.keep(counts)
        combined = unanimous_masks({t: [keep[t][:6], keep[t][6:]] for t in keep}, backbone_count=1)
        backbone, head_a, head_b = combined
        assert int(backbone.sum() + head_a.sum() + head_b.sum()) == target
        top_a = torch.argsort(imp_a, descending=True, stable=True)[: counts["a"]]
        top_b = torch.argsort(imp_b, descending=True, stable=True)[: counts["b"]]
        in_a = torch.zeros(8, dtype=torch.bool)
        in_a[top_a] = True
        in_b = torch.zeros(8, dtype=torch.bool)
        in_b[top_b] = True
        # a backbone weight is pruned iff every task ranks it out of its top-K
        assert torch.equal(~backbone, ~in_a[:6] & ~in_b[:6])
        assert torch.equal(head_a, in_a[6:]) and torch.equal(head_b, in_b[6:])
        assert abs(counts["a"] - counts["b"]) <= 1  # one common keep ratio (Θ sizes are equal here)
    # e.g. at target 4: each task keeps its top-2 → heads' 10s plus backbone {0} from a and {5} from b
    counts = exact_unanimous_counts(ranks, 4)
    assert counts == {"a": 2, "b": 2}


def _sensitivity(model: torch.nn.Module, batches: int) -> dict[str, torch.Tensor]:
    """Independent per-task Σ_b |∂L_k/∂W ⊙ W| over Θ_k (backbone then own head), flattened."""
    model = copy.deepcopy(model).train()
    comps = prunable_weights(model)
    nxt = batch_stream(1)
    out: dict[str, torch.Tensor] = {}
    per_task = {t: [m.weight for _, m in comps["backbone"]] + [m.weight for _, m in comps[f"head/{t}"]]
                for t in ("a", "b")}
    acc = {t: [torch.zeros_like(w) for w in ws] for t, ws in per_task.items()}
    for _ in range(batches):
        b = nxt()
        losses = mse_losses(model(b["image"]), b)
        for t, ws in per_task.items():
            for a, g, w in zip(acc[t], torch.autograd.grad(losses[t], ws, retain_graph=True), ws):
                a += (g * w).abs()
    for t in acc:
        out[t] = torch.cat([a.reshape(-1) for a in acc[t]])
    return out


def test_static_mask_is_the_unanimous_combination_at_the_exact_target() -> None:
    torch.manual_seed(0)
    model = TinyMTL()
    scores = _sensitivity(model, 3)
    method = build_method("disparse", {"variant": "static", "num_batches": 3, "static_reinit": False})
    method.setup(make_ctx(model, 0.85))
    masks = method.masks
    total = masks.total
    assert zero_total(model) == total - keep_count(total, 0.85)
    bb = [ly for ly in masks.layers if ly.component == "backbone"]
    nb = sum(ly.numel for ly in bb)
    backbone_kept = torch.cat([ly.mask.reshape(-1) for ly in bb])
    ranked_in = {}
    for t in ("a", "b"):
        order = torch.sort(scores[t], descending=True, stable=True).indices
        inside = torch.zeros_like(scores[t], dtype=torch.bool)
        inside[order[: method.task_counts[t]]] = True
        ranked_in[t] = inside
        head = torch.cat([ly.mask.reshape(-1) for ly in masks.layers if ly.component == f"head/{t}"])
        assert torch.equal(head, inside[nb:])
    assert torch.equal(~backbone_kept, ~ranked_in["a"][:nb] & ~ranked_in["b"][:nb])


def test_static_reinit_restores_the_models_own_weights() -> None:
    torch.manual_seed(0)
    model = TinyMTL()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    method = build_method("disparse", {"variant": "static", "num_batches": 2})
    method.setup(make_ctx(model, 0.5))
    for layer in method.masks.layers:
        w = before[f"{layer.name}.weight"]
        assert torch.equal(layer.original[layer.mask], w[layer.mask])
    assert torch.equal(model.backbone[1].running_mean, before["backbone.1.running_mean"])


def test_dynamic_schedule_regrowth_and_final_target() -> None:
    torch.manual_seed(0)
    model = TinyMTL()
    method = build_method("disparse", {"update_every": 4, "end_fraction": 0.6})
    ctx = make_ctx(model, 0.8, iterations=30)
    method.setup(ctx)
    assert method.end == 18 and method.updates == 0  # updates run before the forward of i = 0, 4, ...
    total = method.masks.total
    heads = [i for i, ly in enumerate(method.masks.layers) if ly.component != "backbone"]
    seen: list[int] = []

    def check(step: int) -> None:
        if step < 18 and step % 4 == 0:  # after step i's update (before its forward) and its optimizer step
            alive = method.masks.kept_per_layer()
            # a head regrows at most to its ERK count (exactly, unless it lacks pruned positions with a
            # gradient); the backbone takes the union of the tasks' growth, so it may exceed it
            for i, (a, k) in enumerate(zip(alive, method.layer_keep)):
                if i in heads:
                    assert a <= k
            seen.append(step)

    run_loop(method, ctx, on_step=check)
    assert seen == [0, 4, 8, 12, 16] and method.updates == 5 and method.final_done
    # per layer the ERK count, except that a layer short of live (non-zero) weights — a dead unit in this
    # tiny model — hands its shortfall to the global magnitude ranking; the total is exact either way
    kept = method.masks.kept_per_layer()
    assert sum(kept) == sum(method.layer_keep)
    assert sum(abs(a - k) for a, k in zip(kept, method.layer_keep)) <= 2
    assert sum(method.layer_keep) == keep_count(total, 0.8)
    assert zero_total(model) == total - keep_count(total, 0.8)
    assert method.log_state()["prune/final"] == 1.0


def test_dynamic_rate_is_cosine() -> None:
    method = build_method("disparse")
    method.setup(make_ctx(TinyMTL(), 0.9, iterations=100))
    assert method.end == 75
    assert method._rate(0) == pytest.approx(0.5)
    assert method._rate(75) == pytest.approx(0.0)
    assert method._rate(37.5) == pytest.approx(0.25)


def test_dynamic_resume_replays_the_setup_stream() -> None:
    torch.manual_seed(0)
    params = {"update_every": 3, "end_fraction": 0.5, "regrow_batch": "setup"}
    method = build_method("disparse", params)
    model = TinyMTL()
    ctx = make_ctx(model, 0.8, iterations=20)
    method.setup(ctx)
    run_loop(method, ctx, steps=7)
    state, mstate = model.state_dict(), method.state_dict()
    assert mstate["setup_batches"] == 3
    fresh_model = TinyMTL()
    ctx2 = make_ctx(fresh_model, 0.8, iterations=20, resuming=True)
    drawn = []
    inner = ctx2.next_batch
    ctx2.next_batch = lambda: drawn.append(1) or inner()
    resumed = build_method("disparse", params)
    resumed.setup(ctx2)
    fresh_model.load_state_dict(state)
    resumed.load_state_dict(mstate)
    assert len(drawn) == 3 and resumed.updates == method.updates
    assert all(torch.equal(a, b) for a, b in zip(resumed.masks.masks(), method.masks.masks()))


def test_task_weights_validated_and_used() -> None:
    method = build_method("disparse", {"variant": "static", "num_batches": 1, "task_weights": {"a": 1, "b": 20}})
    method.setup(make_ctx(TinyMTL(), 0.5))
    assert method.task_weights(0, {"a": torch.tensor(1.0), "b": torch.tensor(1.0)}) == {"a": 1.0, "b": 20.0}
    bad = build_method("disparse", {"variant": "static", "num_batches": 1, "task_weights": {"zzz": 1}})
    with pytest.raises(ValueError, match="unknown tasks"):
        bad.setup(make_ctx(TinyMTL(), 0.5))
