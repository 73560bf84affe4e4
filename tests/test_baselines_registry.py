"""Every comparison method: pruned weights exactly zero after Adam + weight decay, the final overall sparsity
equal to the target to one weight, a run on synthetic scenes through the engine, tracked (memory / MLflow)."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_config
from test_baselines_kit import TinyMTL, make_ctx, run_loop, zero_total

from trainers.masking import keep_count
from trainers.methods import METHOD_REGISTRY, build_method, method_metadata
from trainers.reporting import MemoryReporter

#: (method, params for a short run) — every baseline, DiSparse in both variants
CASES = [
    ("snip", {}),
    ("lth", {"dense_iterations": 4}),
    ("imp", {}),
    ("disparse", {"update_every": 2}),
    ("disparse", {"variant": "static", "num_batches": 2}),
]
IDS = ["snip", "lth", "imp", "disparse-dynamic", "disparse-static"]
BASELINES = ["snip", "lth", "imp", "disparse"]



@pytest.mark.parametrize("name", BASELINES)
def test_registered_with_metadata_and_space(name: str) -> None:
    from search_spaces import check_param, representative, space_for
    from trainers.methods import validate_params

    assert name in METHOD_REGISTRY
    meta = method_metadata(name)
    assert meta["bibtex_key"] and meta["year"] and meta["bibtex"].startswith("@")
    spaces = space_for(name)
    validate_params(name, spaces.fixed)
    for key, spec in spaces.space.items():
        check_param(key, spec)
        validate_params(name, {**spaces.fixed, key: representative(spec)})


@pytest.mark.parametrize(("name", "params"), CASES, ids=IDS)
@pytest.mark.parametrize("target", [0.5, 0.9])
def test_pruned_weights_exactly_zero_and_target_exact(name: str, params: dict, target: float) -> None:
    torch.manual_seed(0)
    model = TinyMTL()
    method = build_method(name, params)
    ctx = make_ctx(model, target, iterations=16, weight_decay=0.1)
    method.setup(ctx)
    run_loop(method, ctx)
    masks = method.masks
    for layer in masks.layers:
        assert torch.all(layer.module.weight[~layer.mask] == 0), layer.name  # the forward sees zeros
        if not masks.keep_pruned_values:  # DiSparse-dynamic keeps stored values, as torch prune does
            assert torch.all(layer.original[~layer.mask] == 0), layer.name
    slack = _bias_slack(method)
    assert abs(zero_total(model) - (masks.total - keep_count(masks.total, target))) <= 1 + slack
    state = method.log_state()
    assert all(isinstance(v, float) for v in state.values())
    assert state["prune/density"] == pytest.approx(keep_count(masks.total, target) / masks.total,
                                                   abs=(1 + slack) / masks.total)


def _conv_biases(cfg) -> int:
    """Conv/linear biases of the run's model: official SNIP ranks them with the weights."""
    from trainers.data import DATASETS
    from trainers.models import build_model
    from trainers.sparsity import prunable_weights

    tasks = cfg.data.task_list()
    channels = DATASETS[cfg.data.name].task_channels
    model = build_model(cfg.model.arch, {t: channels[t] for t in tasks}, width=cfg.model.width)
    return sum(m.bias.numel() for comp in prunable_weights(model).values() for _, m in comp if m.bias is not None)


def _bias_slack(method) -> int:
    """Official SNIP ranks biases with the weights: the weights' count may move by up to #biases."""
    return sum(m.mask.numel() for _, m in getattr(method, "bias_masks", []))


def _assert_run(result, rep, target: float, slack: int = 0) -> None:
    assert result.completed and rep.status == "FINISHED"
    prunable = result.params["prunable"]
    assert abs((prunable - result.params["prunable_nonzero"]) - round(target * prunable)) <= 1 + slack
    assert rep.last("final/sparsity/overall") == pytest.approx(target, abs=(1.5 + slack) / prunable)
    assert rep.last("compute/optimizer_steps") >= result.steps
    for key in ("sparsity/backbone", "sparsity/head/normal", "final/sparsity/head/segment_semantic",
                "prune/density"):
        assert key in rep.metrics, key


@pytest.mark.parametrize(("name", "params"), CASES, ids=IDS)
def test_engine_run_on_synthetic_scenes(tmp_path, name: str, params: dict) -> None:
    cfg = tiny_config(method=name, method_params=params, target_sparsity=0.9,
                      train={"iterations": 6, "val_every": 6, "log_every": 2, "checkpoint_every": 6})
    rep = MemoryReporter()
    from trainers.engine import train

    result = train(cfg, rep, workdir=tmp_path)
    _assert_run(result, rep, 0.9, slack=_conv_biases(cfg) if name == "snip" else 0)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "params"), CASES, ids=IDS)
def test_resume_matches_uninterrupted(tmp_path, name: str, params: dict) -> None:
    from trainers.engine import train

    cfg = tiny_config(method=name, method_params=params, target_sparsity=0.8)
    train(cfg, None, workdir=tmp_path / "full")
    train(cfg, None, workdir=tmp_path / "parts", stop_at=4)
    train(cfg, None, workdir=tmp_path / "parts", resume=True)
    a = torch.load(tmp_path / "full" / "final.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "parts" / "final.pt", weights_only=True)["model"]
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.parametrize(("name", "params"), CASES, ids=IDS)
def test_tracked_in_mlflow(tmp_path, name: str, params: dict) -> None:
    from orchestrator import tracking
    from trainers.engine import train
    from trainers.reporting import FanOutReporter, MLflowReporter

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    exp = tracking.ensure_experiment(uri, "baselines")
    cfg = tiny_config(method=name, method_params=params, target_sparsity=0.9)
    run_id = tracking.create_run(uri, exp, run_name=name, tags={"run_key": cfg.run_key(), "method": name})
    mem = MemoryReporter()
    result = train(cfg, FanOutReporter(MLflowReporter(uri, run_id), mem), workdir=tmp_path / "run")
    _assert_run(result, mem, 0.9, slack=_conv_biases(cfg) if name == "snip" else 0)
    run = tracking.client(uri).get_run(run_id)
    assert run.info.status == "FINISHED"
    metrics = run.data.metrics
    assert metrics["final/sparsity/overall"] == pytest.approx(0.9, abs=1e-5 if name != "snip" else 1e-3)
    assert "sparsity/backbone" in metrics and "prune/density" in metrics
    assert run.data.params["method"] == name
    history = tracking.client(uri).get_metric_history(run_id, "sparsity/overall")
    assert len(history) >= 2  # sparsity per component over training, not only the final value
