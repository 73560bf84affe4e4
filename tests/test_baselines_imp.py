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
    method = build_method("imp", {"end_fraction": 0.8})
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
    method = build_method("imp")
    method.setup(make_ctx(TinyMTL(), 0.5, iterations=30))
    method.round, method.kept = 2, 123
    other = build_method("imp")
    other.setup(make_ctx(TinyMTL(), 0.5, iterations=30, resuming=True))
    other.load_state_dict(method.state_dict())
    assert other.round == 2 and other.kept == 123 and other.steps == method.steps
