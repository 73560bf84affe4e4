"""AdapMTL through the real engine on synthetic scenes: dense/sparse extremes of θ_init, resume, target 0.9.

The fast tests use the shared tiny configuration (32×32 scenes, width-0.125 ResNet34, a dozen steps). The
slow ones (``-m slow``) train for a few minutes on one core: the 0.9 target run and the measurement the issue
note records (AdapMTL vs a dense run of the same budget, ResNet34 and MobileNetV2).
"""

from __future__ import annotations

import json
import os
import time

import pytest
import torch

from trainers.engine import train
from trainers.reporting import MemoryReporter

# θ_init −6 puts α ≈ 2.5e−3 inside the weight distribution of the CPU-sized models, so a few hundred steps
# suffice (the paper's −20 needs ~10⁴ steps of θ climbing at ≈ lr per step).
FAST_SPARSIFY = {"theta_init": -6.0, "window": 4, "warmup": 2, "warmup_fraction": None}


def test_theta_minus_1000_stays_dense(tmp_path, make_config):
    rep = MemoryReporter()
    cfg = make_config(method="adapmtl", target_sparsity=0.9, method_params={"theta_init": -1000.0})
    result = train(cfg, rep, workdir=tmp_path)
    assert result.completed
    assert all(v == 0.0 for _, v in rep.metrics["sparsity/overall"])
    assert result.sparsity["overall"] == 0.0
    assert rep.metrics["threshold/backbone"][-1][1] == 0.0  # σ(−1000 + 12·lr) is exactly 0 in float32


def test_positive_theta_sparsifies_at_once(tmp_path, make_config):
    rep = MemoryReporter()
    cfg = make_config(method="adapmtl", target_sparsity=0.95,
                      method_params={"theta_init": 1.0, "on_target": "freeze_thresholds"})
    train(cfg, rep, workdir=tmp_path)
    first_step, first = rep.metrics["sparsity/overall"][0]
    assert first_step == 3 and first > 0.95


def test_run_logs_thresholds_weights_and_requested_vs_achieved(tmp_path, make_config):
    rep = MemoryReporter()
    cfg = make_config(method="adapmtl", target_sparsity=0.5, method_params=FAST_SPARSIFY)
    result = train(cfg, rep, workdir=tmp_path)
    tasks = cfg.data.task_list()
    for comp in ("backbone", *(f"head/{t}" for t in tasks)):
        assert len(rep.metrics[f"threshold/{comp}"]) == 4 and f"theta/{comp}" in rep.metrics
        assert f"sparsity/{comp}" in rep.metrics
    for t in tasks:
        assert f"train/weight/{t}" in rep.metrics and f"adapmtl/beta/{t}" in rep.metrics
    assert result.method_state["requested_sparsity"] == 0.5
    assert result.method_state["achieved_sparsity"] == pytest.approx(result.sparsity["overall"])
    assert rep.json["method_state.json"]["requested_sparsity"] == 0.5
    # β became adaptive after the 2-step warm-up (it is not 1 any more for every task)
    assert any(abs(rep.last(f"adapmtl/beta/{t}") - 1.0) > 1e-6 for t in tasks)


@pytest.mark.parametrize("on_target", ["fix_mask", "freeze_thresholds"])
def test_resume_reproduces_thresholds_and_beta(tmp_path, make_config, on_target):
    # target 0.15 is crossed at step 4-5 (sparsity 0.13 at step 3, 0.17 at 6): after the stop, so the resumed
    # half exercises the target rule
    cfg = make_config(method="adapmtl", target_sparsity=0.15, method_params={**FAST_SPARSIFY,
                                                                            "on_target": on_target})
    full = train(cfg, None, workdir=tmp_path / "full")
    partial = train(cfg, None, workdir=tmp_path / "parts", stop_at=4)
    assert not partial.completed
    resumed = train(cfg, None, workdir=tmp_path / "parts", resume=True)
    assert resumed.completed
    a = torch.load(tmp_path / "full" / "final.pt", weights_only=True)
    b = torch.load(tmp_path / "parts" / "final.pt", weights_only=True)
    assert a["model"].keys() == b["model"].keys()
    theta_keys = [k for k in a["model"] if k.startswith("soft_thresholds.")]
    assert theta_keys
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=1e-5, atol=1e-6, msg=k)
    for key in ("beta", "buf", "prev"):
        torch.testing.assert_close(a["method"]["weighting"][key], b["method"]["weighting"][key], msg=key)
    assert a["method"]["weighting"]["count"] == b["method"]["weighting"]["count"]
    assert 4 <= int(a["method"]["reached_step"]) == int(b["method"]["reached_step"])  # crossed after the stop
    assert full.sparsity == pytest.approx(resumed.sparsity)


# -- slow: the 0.9 target and the issue note's measurement --------------------------------------------
# The sparsity driver is the optimizer's coupled weight decay (on θ and on the weights). The official runs use
# 5e−8…7.5e−5 over 20K steps from θ_init −15/−18; a 240-step CPU run needs the same mechanism ~100× faster:
# θ_init −5 (α ≈ 6.7e−3, inside the weights' range) and weight decay 1e−2, under which θ climbs instead of
# being pushed down by the loss (with 1e−4 the CPU-sized ResNet34 plateaus near 0.72–0.78 overall).
WEIGHT_DECAY = 1e-2
THETA_INIT = -5.0

def _budget_config(arch: str, method: str, iterations: int, **method_params):
    from trainers.config import RunConfig

    return RunConfig(
        data={"name": "synthetic_scenes", "resolution": 32,
              "options": {"n_train": 256, "n_val": 32, "n_test": 64}},
        model={"arch": arch, "width": 0.125},
        train={"iterations": iterations, "batch_size": 8, "val_every": iterations, "log_every": 20,
               "checkpoint_every": iterations, "lr": 1e-3, "weight_decay": WEIGHT_DECAY,
               "lr_decay_every": iterations, "lr_decay": 0.5},
        method=method, method_params=method_params,
        target_sparsity=0.9 if method != "dense" else None,
    )


@pytest.mark.slow
def test_reaches_target_090_with_different_component_sparsities(tmp_path):
    rep = MemoryReporter()
    cfg = _budget_config("resnet34", "adapmtl", 240, theta_init=THETA_INIT)
    result = train(cfg, rep, workdir=tmp_path)
    assert result.sparsity["overall"] == pytest.approx(0.9, abs=0.02)
    comps = {k: v for k, v in result.sparsity.items() if k != "overall"}
    assert max(comps.values()) - min(comps.values()) > 0.05, comps
    # the run's record has the curves the issue asks for
    for key in ("sparsity/overall", "sparsity/backbone", "threshold/backbone", "threshold/head/normal",
                "train/weight/normal", "adapmtl/beta/normal"):
        assert len(rep.metrics[key]) >= 10, key
    assert result.method_state["adapmtl/mask_fixed"] == 1.0


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["resnet34", "mobilenetv2"])
def test_note_measurement_allocation_and_delta_t(tmp_path, arch):
    """AdapMTL vs dense of the same budget: allocation (backbone vs heads) and ΔT (paper convention)."""
    iterations = int(os.environ.get("ADAPMTL_NOTE_ITERS", "240"))
    t0 = time.perf_counter()
    dense = train(_budget_config(arch, "dense", iterations), None, workdir=tmp_path / "dense")
    t_dense = time.perf_counter() - t0
    reference = {"val": dense.val, "test": dense.test}
    t0 = time.perf_counter()
    pruned = train(_budget_config(arch, "adapmtl", iterations, theta_init=THETA_INIT), None,
                   workdir=tmp_path / "adapmtl", reference=reference)
    t_pruned = time.perf_counter() - t0
    assert pruned.test_delta_t is not None
    record = {
        "arch": arch, "iterations": iterations, "sparsity": pruned.sparsity,
        "delta_t": pruned.test_delta_t, "seconds": {"dense": t_dense, "adapmtl": t_pruned},
        "thresholds": {k: v for k, v in pruned.method_state.items() if k.startswith("threshold/")},
        "target_reached_step": pruned.method_state.get("adapmtl/target_reached_step"),
    }
    out = os.environ.get("ADAPMTL_NOTE_OUT")
    if out:
        with open(out, "a") as fh:
            fh.write(json.dumps(record, default=float) + "\n")
    print(json.dumps(record, indent=1, default=float))
    assert pruned.sparsity["overall"] == pytest.approx(0.9, abs=0.03)
