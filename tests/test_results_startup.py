"""What a cached ``adapmtl table`` call imports (issue 14, item 12; the latency itself is measured in
benchmarks/bench_table_latency.py — no timed assertions here), and the method-metadata cache behind it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from results import method_registry as M
from tests.results_fixtures import SWEEP, sweep_store

REPO = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "mlflow", "ray", "sqlalchemy", "matplotlib", "trainers.methods")


def _run(code: str, cache: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), ADAPMTL_CACHE_DIR=str(cache), MLFLOW_DISABLE_TELEMETRY="true")
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)


def test_cached_table_call_imports_no_heavy_package(tmp_path_factory, tmp_path):
    uri = sweep_store(tmp_path_factory.mktemp("results_store"))["uri"]
    code = (f"import sys\nfrom orchestrator.cli import main\n"
            f"rc = main(['table', {SWEEP!r}, '--tracking-uri', {uri!r}, '--arch', 'resnet34', '--format', 'latex'])\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)\nsys.exit(rc)\n")
    first = _run(code, tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "torch" in first.stderr.splitlines()[-1]  # cold: the registry was asked once
    again = _run(code, tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stderr.splitlines()[-1] == "[]", again.stderr
    assert again.stdout == first.stdout and "\\cite{xiang2024adapmtl}" in again.stdout  # same table, cited


def test_metadata_cache_matches_the_registry(tmp_path, monkeypatch):
    from trainers.methods import METHOD_REGISTRY, method_metadata

    monkeypatch.setenv("ADAPMTL_CACHE_DIR", str(tmp_path))
    M.registry_info.cache_clear()
    info = M.registry_info()
    assert set(info) == set(METHOD_REGISTRY)
    for name in METHOD_REGISTRY:
        assert {k: M.method_metadata(name)[k] for k in ("title", "year", "bibtex_key", "bibtex")} == {
            k: method_metadata(name)[k] for k in ("title", "year", "bibtex_key", "bibtex")}
    assert M.param_defaults("adapmtl")["window"] == "400"
    files = list(tmp_path.glob("methods-*.json"))
    assert len(files) == 1 and json.loads(files[0].read_text())["methods"] == info
    assert M.method_metadata("no-such-method")["bibtex_key"] is None and M.param_defaults("no-such-method") == {}
    M.registry_info.cache_clear()


def test_fingerprint_follows_the_sources(tmp_path, monkeypatch):
    pkg = tmp_path / "fakemethods"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "m.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(M, "SOURCE_PACKAGES", ("fakemethods",))
    before = M.source_fingerprint()
    assert before is not None and M.source_fingerprint() == before
    (pkg / "m.py").write_text("X = 22\n")  # an edited method module
    assert M.source_fingerprint() != before
    (pkg / "new.py").write_text("")  # a new method module
    assert len({before, M.source_fingerprint()}) == 2
    monkeypatch.setattr(M, "SOURCE_PACKAGES", ("no_such_package_xyz",))
    assert M.source_fingerprint() is None


@pytest.mark.parametrize("bad", ["not json", json.dumps({"format": "other"})])
def test_unreadable_cache_falls_back_to_the_registry(tmp_path, monkeypatch, bad):
    monkeypatch.setenv("ADAPMTL_CACHE_DIR", str(tmp_path))
    (tmp_path / f"methods-{M.source_fingerprint()}.json").write_text(bad)
    M.registry_info.cache_clear()
    assert M.method_metadata("snip")["display_name"] == "SNIP"
    M.registry_info.cache_clear()
