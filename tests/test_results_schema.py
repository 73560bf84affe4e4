"""The MLflow names of DESIGN §3.6 and the shared tracking-URI resolution."""

from __future__ import annotations

from pathlib import Path

import pytest

from results import schema as S


def test_metric_names_follow_design():
    assert S.test_metric("normal", "angle_mean") == "test/normal/angle_mean"
    assert S.test_delta_t("normal") == "test/delta_t/normal" and S.test_delta_t() == "test/delta_t"
    assert S.val_metric("depth_zbuffer", "abs_err") == "val/depth_zbuffer/abs_err"
    assert S.val_delta_t() == "val/delta_t" and S.val_delta_t("normal") == "val/delta_t/normal"
    assert S.train_loss("normal") == "train/loss/normal" and S.train_weight("normal") == "train/weight/normal"
    assert S.sparsity(S.head("normal")) == "sparsity/head/normal" and S.SPARSITY_OVERALL == "sparsity/overall"
    assert S.threshold(S.BACKBONE) == "threshold/backbone"
    assert S.final_sparsity(S.head("normal")) == "final/sparsity/head/normal"
    assert (S.FINAL_PARAMS_TOTAL, S.FINAL_PARAMS_NONZERO, S.FINAL_FLOPS_DENSE, S.FINAL_FLOPS_SPARSE) == (
        "final/params_total", "final/params_nonzero", "final/flops_dense", "final/flops_sparse")
    assert S.IDENTITY_TAGS == ("sweep", "method", "arch", "dataset", "target_sparsity", "seed", "role",
                               "trial_id", "git_sha", "status", "run_key")


def test_parse_test_metric_skips_delta_keys():
    assert S.parse_test_metric("test/normal/within_11.25") == ("normal", "within_11.25")
    assert S.parse_test_metric("test/delta_t/normal") is None
    assert S.parse_test_metric("test/delta_t") is None
    assert S.parse_test_metric("val/normal/x") is None


def test_directions_tag_roundtrip_and_error():
    d = {"normal": {"angle_mean": "lower"}}
    assert S.directions_from_tag(S.directions_to_tag(d)) == d
    with pytest.raises(ValueError, match="malformed"):
        S.directions_from_tag("{not json")


def test_tracking_uri_precedence(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    default = S.resolve_tracking_uri()
    assert default == f"sqlite:///{(tmp_path.resolve() / '.adapmtl' / 'mlflow.db').as_posix()}"
    assert S.sqlite_path(default) == tmp_path.resolve() / ".adapmtl" / "mlflow.db"
    assert S.default_tracking_uri(tmp_path / "w").endswith("/w/mlflow.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    assert S.resolve_tracking_uri() == "http://mlflow:5000"
    assert S.resolve_tracking_uri("sqlite:///x.db") == "sqlite:///x.db"
    assert S.sqlite_path("http://x") is None and S.sqlite_path("sqlite:///rel.db") == Path("rel.db")
