"""IMP: global magnitude rounds of 20% of the remaining weights, on schedule, ending exactly at the target."""

from __future__ import annotations

import pytest
import torch
from test_baselines_kit import TinyMTL, make_ctx, run_loop, zero_total

from baselines.imp import IMPParams, keep_schedule, prune_steps
from trainers.masking import keep_count
from trainers.methods import build_method


def test_keep_schedule_is_open_lth_and_clipped() -> None:
    assert keep_schedule(1000, 100, 0.2) == [800, 640, 512, 409, 327, 261, 208, 166, 132, 105, 100]
    assert keep_schedule(100, 100, 0.2) == []


def test_prune_steps_default_and_explicit() -> None:
    assert prune_steps(4, 100, IMPParams()) == [13, 25, 38, 50]
    assert prune_steps(11, 6, IMPParams()) == [1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3]
    assert prune_steps(3, 100, IMPParams(prune_every=10, start_step=5)) == [15, 25, 35]
    with pytest.raises(ValueError, match="iterations"):
        prune_steps(11, 100, IMPParams(prune_every=10))


def test_imp_follows_its_schedule_and_ends_at_target() -> None:
    torch.manual_seed(0)
    model = TinyMTL()
    method = build_method("imp", {"schedule": "single_budget", "end_fraction": 0.8})
    ctx = make_ctx(model, 0.9, iterations=40)
    method.setup(ctx)
    total = method.masks.total
    expected = {s: k for s, k in zip(method.steps, method.schedule)}
    zeros_after: dict[int, int] = {}
    run_loop(method, ctx, on_step=lambda step: zeros_after.__setitem__(step + 1, zero_total(model)))
    kept = total
    for done in range(1, 41):
        kept = expected.get(done, kept)
        assert zeros_after[done] == total - kept, done
        if done in expected:
            assert method.masks.total - kept == total - expected[done]
    assert zero_total(model) == total - keep_count(total, 0.9)
    assert method.round == len(method.schedule) and method.log_state()["prune/round"] == len(method.schedule)
    # later rounds only remove: once pruned, a weight stays pruned
    assert method.log_state()["prune/density"] == pytest.approx(keep_count(total, 0.9) / total)


def test_imp_state_roundtrip() -> None:
    method = build_method("imp", {"schedule": "single_budget"})
    method.setup(make_ctx(TinyMTL(), 0.5, iterations=30))
    method.round, method.kept = 2, 123
    other = build_method("imp", {"schedule": "single_budget"})
    other.setup(make_ctx(TinyMTL(), 0.5, iterations=30, resuming=True))
    other.load_state_dict(method.state_dict())
    assert other.round == 2 and other.kept == 123 and other.steps == method.steps


def test_iterative_schedule_prunes_then_retrains_each_round() -> None:
    """The default: dense phase, then prune → retrain rounds with their own budget, the last round's retraining
    being the main loop; every phase's steps land in the compute ledger."""
    torch.manual_seed(0)
    model = TinyMTL()
    method = build_method("imp")
    ctx = make_ctx(model, 0.9, iterations=20)
    inner = ctx.train_phase
    phases: list[tuple[int, int]] = []  # (steps, zeros when the phase starts)

    def phase(n: int, before_step=None, after_step=None) -> None:
        phases.append((n, zero_total(model)))
        ctx.compute.add_steps(n, setup=True)  # what the engine's train_phase counts
        inner(n, before_step, after_step)

    ctx.train_phase = phase
    method.setup(ctx)
    total = method.masks.total
    rounds = len(method.schedule)
    assert rounds == 11 and method.round_iterations == 1  # ceil(20 / 22)
    # one dense phase of the full budget, then one retraining phase per intermediate round
    assert [n for n, _ in phases] == [20] + [1] * (rounds - 1)
    assert [z for _, z in phases] == [0] + [total - k for k in method.schedule[:-1]]
    assert zero_total(model) == total - keep_count(total, 0.9)  # the last round ends at the target exactly
    assert ctx.compute.setup_steps == 20 + 1 * (rounds - 1)
    run_loop(method, ctx)  # the final retraining: the mask stays fixed
    assert zero_total(model) == total - keep_count(total, 0.9)
    assert method.extra_artifacts()["dense_source"] == "trained"


def test_iterative_reuses_the_dense_reference(tmp_path) -> None:
    torch.manual_seed(0)
    model = TinyMTL()
    dense = TinyMTL()
    cfg = {"method": "dense", "seed": 0, "data": {"tasks": ["a", "b"]},
           "train": {"iterations": 20, "lr": 1e-2, "betas": [0.5, 0.999], "weight_decay": 1e-2,
                     "lr_decay_every": 1000, "lr_decay": 0.5}}
    path = tmp_path / "final.pt"
    torch.save({"config": cfg, "model": dense.state_dict()}, path)
    ctx = make_ctx(model, 0.5, iterations=20, dense_checkpoint=path)
    steps: list[int] = []
    inner = ctx.train_phase
    ctx.train_phase = lambda n, *a, **k: steps.append(n) or inner(n, *a, **k)
    method = build_method("imp")
    method.setup(ctx)
    assert method.dense_source == "checkpoint" and ctx.compute.reused_steps == 20
    assert 20 not in steps and len(steps) == len(method.schedule) - 1
