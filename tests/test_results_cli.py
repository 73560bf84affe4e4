"""``table`` / ``plot`` verbs end to end on a real store (results.cli.main)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from results import cli
from results import schema as S
from tests.results_fixtures import SWEEP, sweep_store


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return sweep_store(tmp_path_factory.mktemp("results_store"))


@pytest.fixture(scope="module")
def uri(store):
    return store["uri"]


def test_table_latex_to_file(uri, tmp_path, capsys):
    out = tmp_path / "t.tex"
    rc = cli.main(["table", SWEEP, "--kind", "comparison", "--format", "latex", "--out", str(out),
                   "--tracking-uri", uri, "--arch", "resnet34"])
    assert rc == 0
    tex = out.read_text()
    assert tex.count("\\begin{table") == 1 and "\\bottomrule" in tex
    if shutil.which("pdflatex"):
        from results.render import latex_document

        (tmp_path / "doc.tex").write_text(latex_document(tex))
        proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"],
                              cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stdout[-1500:]


@pytest.mark.parametrize("kind", ["sweep", "tasks", "ablation", "cost"])
def test_table_kinds_markdown_stdout(uri, kind, capsys, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # no --tracking-uri: env is used
    assert cli.main(["table", SWEEP, "--kind", kind, "--format", "markdown"]) == 0
    assert "| " in capsys.readouterr().out


def test_plot_sweep_and_allocation(uri, tmp_path):
    assert cli.main(["plot", SWEEP, "--kind", "sweep", "--tracking-uri", uri, "--out", str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").exists() and (tmp_path / "s.pdf").exists()
    assert cli.main(["plot", SWEEP, "--kind", "allocation", "--tracking-uri", uri, "--arch", "resnet34",
                     "--out", str(tmp_path / "a.png")]) == 0
    assert (tmp_path / "a.pdf").exists()


def test_errors_are_one_line_exit_2(uri, tmp_path, capsys):
    assert cli.main(["table", "no-such-sweep", "--tracking-uri", uri]) == 2
    err = capsys.readouterr().err
    assert err.startswith("adapmtl: error: no MLflow experiment named 'no-such-sweep'") and err.count("\n") == 1
    assert cli.main(["table", SWEEP, "--tracking-uri", f"sqlite:///{tmp_path}/none.db"]) == 2
    assert "no MLflow store" in capsys.readouterr().err
    assert cli.main(["table", SWEEP, "--tracking-uri", uri, "--arch", "vgg"]) == 2


def test_allocation_plot_defaults_to_the_reported_trial(uri, store, tmp_path):
    """The figure shows the run the tables report: the group's best=true trial (here the tag is set on the
    run with the *lower* raw val ΔT, as the orchestrator does when the higher one missed its target)."""
    from mlflow.tracking import MlflowClient

    from results import collect as C
    from results.tables import pick_trials

    client = MlflowClient(uri)
    worse = store["ids"]["adap_A0_worse"]
    client.set_tag(worse, "best", "true")
    try:
        df = C.collect(SWEEP, tracking_uri=uri, use_cache=False)
        assert cli.best_run(df, "adapmtl", None, "resnet34", 0.9) == worse
        runs = df[(df[S.TAG_METHOD] == "adapmtl") & (df[S.TAG_SEED].astype(float) == 0)
                  & (df[S.TAG_TARGET_SPARSITY].astype(float) == 0.9) & (df[S.TAG_VARIANT].isna())]
        assert pick_trials(runs, [S.TAG_METHOD, S.TAG_VARIANT])["run_id"].tolist() == [worse]
        assert cli.best_run(df, "adapmtl", None, "resnet34", 0.9, seed=1) == store["ids"]["adap_A1"]
        row = df[df["run_id"] == worse].iloc[0]
        assert cli.run_title(row) == "AdapMTL, 90% target sparsity, seed 0"
    finally:
        client.set_tag(worse, "best", "false")


def test_out_extension_picks_the_format(uri, tmp_path, capsys):
    """``--out table.tex`` without ``--format`` writes LaTeX (it used to write Markdown into the .tex)."""
    for name, marker in (("t.tex", "\\begin{table"), ("t.md", "| Method |"), ("t.csv", "Method,")):
        out = tmp_path / name
        assert cli.main(["table", SWEEP, "--tracking-uri", uri, "--arch", "resnet34", "--out", str(out)]) == 0
        assert marker in out.read_text(), name
    assert cli.main(["table", SWEEP, "--tracking-uri", uri, "--arch", "resnet34"]) == 0
    assert capsys.readouterr().out.startswith("**Comparison.**")  # stdout without --format: Markdown


def test_conflicting_format_and_unknown_extension_are_one_line_errors(uri, tmp_path, capsys):
    out = tmp_path / "t.tex"
    assert cli.main(["table", SWEEP, "--tracking-uri", uri, "--format", "markdown", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("adapmtl: error: --format markdown contradicts --out") and err.count("\n") == 1
    assert not out.exists()
    assert cli.main(["table", SWEEP, "--tracking-uri", uri, "--out", str(tmp_path / "t.txt")]) == 2
    assert "cannot tell the format" in capsys.readouterr().err
    # an explicit format with an extension that says nothing is the user's choice
    assert cli.main(["table", SWEEP, "--tracking-uri", uri, "--arch", "resnet34", "--format", "latex",
                     "--out", str(tmp_path / "t.txt")]) == 0
    assert "\\begin{table" in (tmp_path / "t.txt").read_text()
    assert cli.main(["plot", SWEEP, "--tracking-uri", uri, "--out", str(tmp_path / "s.svg")]) == 2
    assert "use a .png or .pdf name" in capsys.readouterr().err


def test_workdir_locates_the_local_store(uri, tmp_path, monkeypatch, capsys):
    """``--workdir DIR`` reads ``DIR/mlflow.db``, so a sweep is found from any directory without a URI."""
    from results.schema import sqlite_path

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    workdir = sqlite_path(uri).parent
    assert cli.main(["table", SWEEP, "--workdir", str(workdir), "--arch", "resnet34"]) == 0
    assert "| Method |" in capsys.readouterr().out
