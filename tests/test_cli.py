"""The ``adapmtl`` command as a user meets it: help on every option, --version, one error prefix, ``status``
from any directory, and ``train`` with the training settings a user needs (issue 14, item 10)."""

from __future__ import annotations

import argparse
import json

import pytest
import yaml

from orchestrator.cli import build_parser, main


def _verbs(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_option_of_every_verb_has_help():
    parser = build_parser()
    assert "AdapMTL" in parser.description and "adapmtl quickstart" in parser.epilog
    missing = []
    for verb, sub in _verbs(parser).items():
        assert sub.description, f"{verb} has no description"
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS:
                continue
            if not (action.help or "").strip():
                missing.append(f"{verb} {'/'.join(action.option_strings) or action.dest}")
    assert not missing, f"options without help: {missing}"
    assert {"train", "params", "run", "submit", "resume", "status", "quickstart", "table", "plot",
            "relocate"} <= set(_verbs(parser))


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith("adapmtl ") and out.split()[1][0].isdigit()


def test_argument_errors_are_one_line_with_the_common_prefix(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["table", "x", "--kind", "nope"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("adapmtl: error: table: argument --kind: invalid choice")
    with pytest.raises(SystemExit):
        main(["frobnicate"])
    assert capsys.readouterr().err.startswith("adapmtl: error: argument VERB: invalid choice")


def test_runtime_errors_of_sweep_and_results_verbs_share_the_prefix(tmp_path, capsys):
    assert main(["run", str(tmp_path / "missing.yaml"), "--dry-run"]) == 2
    assert main(["table", "nope", "--tracking-uri", f"sqlite:///{tmp_path}/none.db"]) == 2
    assert main(["status", "nope", "--workdir", str(tmp_path)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith("adapmtl: error: ") for line in lines), lines


def _sweep_store(tmp_path, name: str) -> str:
    """An MLflow store holding a finished sweep (parent run + children) and nothing else on disk."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{(tmp_path / 'store' / 'mlflow.db').as_posix()}"
    (tmp_path / "store").mkdir()
    c = MlflowClient(uri)
    exp = c.create_experiment(name)
    parent = c.create_run(exp, tags={"sweep": name, "role": "sweep"}).info.run_id
    for group, status, best, dt in (("snip-0.9-s0", "FINISHED", "true", -3.5), ("snip-0.9-s0", "FAILED", None, None),
                                    ("adapmtl-0.9-s0", "FINISHED", "true", 1.25)):
        tags = {"sweep": name, "group": group, "mlflow.parentRunId": parent, "role": "trial"}
        if best:
            tags["best"] = best
        run = c.create_run(exp, tags=tags).info.run_id
        if dt is not None:
            c.log_metric(run, "test/delta_t", dt)
        c.set_terminated(run, status=status)
    c.set_terminated(parent, status="FINISHED")
    return uri


def test_status_from_another_directory_with_only_the_tracking_uri(tmp_path, monkeypatch, capsys):
    uri = _sweep_store(tmp_path, "far-sweep")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert main(["status", "far-sweep", "--tracking-uri", uri]) == 0
    out = capsys.readouterr().out
    assert "sweep far-sweep: done · finished 2 · running 0 · failed 1" in out
    assert "adapmtl-0.9-s0" in out and "+1.25" in out and "-3.50" in out
    assert main(["status", "far-sweep", "--workdir", str(tmp_path / "store")]) == 0  # the store's directory
    assert "finished 2" in capsys.readouterr().out
    assert not (elsewhere / ".adapmtl").exists()  # looking never creates a store


def test_train_flags_and_config_file_build_the_run_config(tmp_path):
    from orchestrator.single_run import config_from_args

    parser = build_parser()
    cfg_file = tmp_path / "run.yaml"
    cfg_file.write_text(yaml.safe_dump({"method": "adapmtl", "target_sparsity": 0.8, "train": {"lr": 0.01},
                                        "model": {"width": 0.5}}))
    args = parser.parse_args(["train", "--config", str(cfg_file), "--weight-decay", "0.001", "--iterations", "7",
                              "--batch-size", "2", "--lr-decay-every", "3", "--tasks", "normal,depth_zbuffer",
                              "--data-option", "n_train=8", "--param", "theta_init=-5"])
    cfg = config_from_args(args)
    assert cfg.method == "adapmtl" and cfg.target_sparsity == 0.8 and cfg.model.width == 0.5
    assert (cfg.train.lr, cfg.train.weight_decay, cfg.train.iterations, cfg.train.batch_size,
            cfg.train.lr_decay_every) == (0.01, 0.001, 7, 2, 3)
    assert cfg.data.tasks == ["normal", "depth_zbuffer"] and cfg.data.options == {"n_train": 8}
    assert cfg.method_params == {"theta_init": -5}
    plain = config_from_args(parser.parse_args(["train"]))
    assert plain.model.width == 0.25 and plain.method == "dense"  # the CPU-sized default


def test_train_runs_with_the_given_settings(tmp_path, capsys):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{(tmp_path / 'mlflow.db').as_posix()}"
    rc = main(["train", "--workdir", str(tmp_path), "--tracking-uri", uri, "--resolution", "32", "--width", "0.125",
               "--head-channels", "16", "--tasks", "segment_semantic,normal", "--data-option", "n_train=16",
               "--data-option", "n_val=8", "--data-option", "n_test=8", "--iterations", "2", "--batch-size", "4",
               "--val-every", "2", "--lr", "0.005", "--weight-decay", "0"])
    assert rc == 0, capsys.readouterr().err
    run_id = json.loads(capsys.readouterr().out)["run_id"]
    params = MlflowClient(uri).get_run(run_id).data.params
    assert params["train.lr"] == "0.005" and params["train.weight_decay"] == "0.0"
    assert params["train.iterations"] == "2" and params["data.options.n_train"] == "16"
