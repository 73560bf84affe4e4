"""The calibration figures of a finished benchmark sweep, read from MLflow (what benchmarks/RESULTS.md reports).

    .venv/bin/python benchmarks/benchmark_figures.py benchmark [--tracking-uri URI]

Prints, from the runs the tables report (the ``best=true`` trial per group, ΔT recomputed against the same
seed's dense reference, under the sweep's recorded metric conventions):

1. the dense reference's coefficient of variation over seeds, per test metric (target ≤ 5 %);
2. at the highest sparsity, (best method's mean ΔT − worst method's mean ΔT) / (largest seed std of ΔT)
   (target ≥ 3);
3. per fixed-mask baseline, ΔT(0.5) − ΔT(highest) against 2 × its larger seed std (target: larger);

plus every group's mean ± std ΔT, n, achieved sparsity, and the sweep's wall time (parent run start → end).
Exit status 1 when a target is missed, so a CI job can gate on it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

FIXED_MASK = ("snip", "lth", "imp", "disparse")


def _print_wall_time(sweep: str, tracking_uri: str) -> None:
    """The sweep's parent run is not among the collected trial runs: look it up by its tags."""
    from orchestrator import tracking

    exp = tracking.client(tracking_uri).get_experiment_by_name(sweep)
    parent = tracking.find_run(tracking_uri, exp.experiment_id, {"role": tracking.ROLE_SWEEP, "sweep": sweep}) \
        if exp else None
    if parent is not None and parent.info.end_time:
        r = parent.info
        print(f"wall time (parent run): {(r.end_time - r.start_time) / 60000:.1f} min")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("sweep")
    p.add_argument("--tracking-uri", default=None)
    args = p.parse_args(argv)

    from results import schema as S
    from results.collect import collect, metric_col
    from results.tables import DT_PREFIX, _test_columns, pick_trials, score_runs

    df = collect(args.sweep, tracking_uri=S.resolve_tracking_uri(args.tracking_uri), use_cache=False)
    if df.empty:
        print(f"no runs in sweep {args.sweep!r}", file=sys.stderr)
        return 2
    scored = score_runs(df)
    print(f"sweep {args.sweep}: conventions {scored.attrs.get('conventions')}")
    _print_wall_time(args.sweep, S.resolve_tracking_uri(args.tracking_uri))
    ok = True

    refs = scored[scored[S.TAG_ROLE] == S.ROLE_REFERENCE]
    worst = 0.0
    for col, task, metric in _test_columns(refs):
        vals = refs[col].dropna().tolist()
        if len(vals) < 2:
            continue
        mean, sd = statistics.mean(vals), statistics.stdev(vals)
        cv = abs(sd / mean) * 100 if mean else float("inf")
        worst = max(worst, cv)
        print(f"  dense {task}/{metric}: {mean:9.4f} ± {sd:.4f}  CV {cv:5.2f} %  (n={len(vals)})")
    print(f"1. largest dense CV: {worst:.2f} % (target ≤ 5): {'ok' if worst <= 5 else 'NOT MET'}")
    ok &= worst <= 5

    trials = pick_trials(scored[scored[S.TAG_ROLE] == S.ROLE_TRIAL],
                         [S.TAG_ARCH, S.TAG_METHOD, S.TAG_VARIANT, S.TAG_TARGET_SPARSITY])
    achieved = metric_col(S.final_sparsity(S.OVERALL))
    stats: dict[tuple[str, float], tuple[float, float, int, float]] = {}
    for (method, target), g in trials.groupby([S.TAG_METHOD, S.TAG_TARGET_SPARSITY]):
        dts = g[DT_PREFIX + S.OVERALL].tolist()
        sd = statistics.stdev(dts) if len(dts) > 1 else float("nan")
        stats[(method, float(target))] = (statistics.mean(dts), sd, len(dts), float(g[achieved].mean()) * 100)
    for (method, target), (mean, sd, n, ach) in sorted(stats.items()):
        print(f"  {method:9s} target {target:<5g} ΔT {mean:+7.2f} ± {sd:5.2f} (n={n}) achieved {ach:5.1f} %")
    top = max(t for _, t in stats)
    at_top = {m: v for (m, t), v in stats.items() if t == top}
    spread = max(v[0] for v in at_top.values()) - min(v[0] for v in at_top.values())
    largest = max(v[1] for v in at_top.values())
    ratio = spread / largest if largest > 0 else float("inf")
    print(f"2. separation at {top:g}: {spread:.2f} / {largest:.2f} = {ratio:.2f} (target ≥ 3): "
          f"{'ok' if ratio >= 3 else 'NOT MET'}")
    ok &= ratio >= 3
    low = min(t for _, t in stats)
    for m in FIXED_MASK:
        if (m, low) in stats and (m, top) in stats and low != top:
            drop = stats[(m, low)][0] - stats[(m, top)][0]
            sd = max(stats[(m, low)][1], stats[(m, top)][1])
            met = drop > 2 * sd
            ok &= met
            print(f"3. {m}: ΔT({low:g}) − ΔT({top:g}) = {drop:.2f} vs 2·std {2 * sd:.2f}: "
                  f"{'ok' if met else 'NOT MET'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
