"""What the sweep's parent MLflow run carries, so that the MLflow UI alone tells a sweep's story.

* at the start: the spec as run (artifact ``spec.yaml``, next to the params the parent already has);
* at the end: summary metrics — ``summary/finished``, ``summary/failed``, ``summary/killed``,
  ``summary/runs``, and per group ``best/test_delta_t/<group>`` and ``best/val_objective/<group>`` (the
  ``best=true`` trial's) — and the exported results: every table kind that the sweep's runs support as
  LaTeX and Markdown with the sweep's one ``.bib``, and the sweep and sensitivity figures (PNG + PDF),
  written to ``<workdir>/sweeps/<name>/results/`` and logged under the artifact folder ``results/``.

Exporting never fails a finished sweep: a table kind the runs cannot fill (no ablation variants, say) is
skipped, and any other problem is one line on stderr.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from orchestrator import tracking

#: table kinds exported at the end of a sweep, and the figures
TABLE_KINDS: tuple[str, ...] = ("comparison", "sweep", "tasks", "cost", "ablation")
PLOT_KINDS: tuple[str, ...] = ("sweep", "sensitivity")
RESULTS_ARTIFACT_DIR = "results"
_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_\-. /]")


def _say(msg: str) -> None:
    print(f"adapmtl: {msg}", file=sys.stderr, flush=True)


def log_spec(uri: str, parent_run_id: str, spec_path: Path) -> None:
    """The spec as run, as the parent run's ``spec.yaml`` artifact (re-logged on every run/resume)."""
    tracking.client(uri).log_artifact(parent_run_id, str(spec_path))


def metric_key(*parts: str) -> str:
    """An MLflow metric key from parts (group ids are safe already; anything else becomes ``_``)."""
    return "/".join(_KEY_UNSAFE.sub("_", p) for p in parts)


def log_summary(uri: str, parent_run_id: str, kids: list[Any], best: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Summary metrics on the parent run (see the module docstring); returns what was logged."""
    from mlflow.entities import Metric

    counts = {s: sum(r.info.status == s for r in kids) for s in ("FINISHED", "FAILED", "KILLED")}
    values: dict[str, float] = {"summary/runs": float(len(kids)), "summary/finished": float(counts["FINISHED"]),
                                "summary/failed": float(counts["FAILED"]), "summary/killed": float(counts["KILLED"])}
    for group, b in sorted(best.items()):
        for name, key in (("test_delta_t", "test_delta_t"), ("val_objective", "objective")):
            if isinstance(b.get(key), int | float):
                values[metric_key("best", name, group)] = float(b[key])
    import time

    ts = int(time.time() * 1000)
    metrics = [Metric(k, v, ts, 0) for k, v in values.items()]
    c = tracking.client(uri)
    for i in range(0, len(metrics), 1000):
        c.log_batch(parent_run_id, metrics=metrics[i:i + 1000])
    return values


def export_results(name: str, uri: str, parent_run_id: str, out_dir: Path) -> list[Path]:
    """Write the sweep's tables and figures to ``out_dir`` and log them to the parent run; returns the files."""
    try:
        files = _write(name, uri, out_dir)
    except Exception as exc:  # the sweep itself finished: say why the export did not, in one line
        text = str(exc).strip().splitlines()
        _say(f"results of {name} not exported: {type(exc).__name__}: {text[0] if text else ''}")
        return []
    if files:
        c = tracking.client(uri)
        for path in files:
            c.log_artifact(parent_run_id, str(path), artifact_path=RESULTS_ARTIFACT_DIR)
        _say(f"results: {len(files)} file(s) in {out_dir} (also artifacts '{RESULTS_ARTIFACT_DIR}/' of the "
             f"parent run {parent_run_id})")
    return files


def _write(name: str, uri: str, out_dir: Path) -> list[Path]:
    from results import plots, render, tables
    from results.bibtex import sweep_bib_path
    from results.collect import collect

    df = collect(name, tracking_uri=uri)
    if df.empty:
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    for kind in TABLE_KINDS:
        try:
            table = tables.build(kind, df)
        except ValueError:  # this sweep's runs do not make this kind of table (e.g. no ablation variants)
            continue
        for fmt, ext in (("latex", ".tex"), ("markdown", ".md")):
            out = out_dir / f"{kind}{ext}"
            files += render.write(table, fmt, out, bib=sweep_bib_path(out, name))
    for kind in PLOT_KINDS:
        try:
            if kind == "sweep":
                fig = plots.plot_sweep(tables.sweep_data(df))
            else:
                fig = plots.plot_sensitivity(tables.score_runs(tables._select(df, None, None)[0]))
        except ValueError:
            continue
        files += plots.save(fig, out_dir / f"{kind}.png")
        plots.plt.close(fig)
    return sorted(set(files))
