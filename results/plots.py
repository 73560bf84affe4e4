"""Figures (matplotlib, Agg): Fig. 4 sweep, Fig. 3 allocation over training, β evolution, Fig. 5 grid.

Each function returns the Figure (so tests can inspect lines and data) and, given ``out``, writes PNG and
PDF side by side (a paper wants the PDF, a README the PNG). The dense reference is the ΔT = 0 line, drawn
with a label starting with "_" so it stays out of legends and of "one line per method" checks.

PDFs embed their fonts as TrueType (:data:`PAPER_RC`: matplotlib's default Type 3 fonts are rejected by
ACM/IEEE checks); legends and axes use :mod:`results.display_names` (``Depth head``, never
``head/depth_zbuffer``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from results import display_names as D  # noqa: E402
from results import schema as S  # noqa: E402
from results.tables import arch_label, arch_sort_key, method_sort_key  # noqa: E402

KINDS: tuple[str, ...] = ("sweep", "allocation", "weights", "sensitivity")
#: rcParams every figure is saved with: TrueType (Type 42) fonts in PDF/PS, as camera-ready checks demand
PAPER_RC: dict[str, object] = {"pdf.fonttype": 42, "ps.fonttype": 42}


def save(fig: Figure, out: str | Path) -> list[Path]:
    """Write ``out`` and its PNG/PDF sibling; returns both paths."""
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower() if path.suffix.lower() in (".png", ".pdf") else ".png"
    base = path.with_suffix("") if path.suffix.lower() in (".png", ".pdf") else path
    written = []
    for ext in (suffix, ".pdf" if suffix == ".png" else ".png"):
        target = base.with_suffix(ext)
        with matplotlib.rc_context(PAPER_RC):
            fig.savefig(target, dpi=200 if ext == ".png" else None, bbox_inches="tight")
        written.append(target)
    return written


def _label(method: str, variant: object) -> str:
    return D.method_name(method, variant)


BANDS: tuple[str, ...] = ("ci", "std", "none")


def plot_sweep(data: pd.DataFrame, out: str | Path | None = None, convention: str = "paper",
               band: str = "ci") -> Figure:
    """Fig. 4: ΔT vs target sparsity, a line per method, one panel per architecture.

    ``data``: :func:`results.tables.sweep_data` (arch, method, variant, target, dt_mean, dt_std, n, ci_low,
    ci_high, off_target). The band is the 95 % CI of the mean over seeds (``band="ci"``, Student t) or
    ± one std (``"std"``); the figure says which and over how many seeds. Points whose achieved sparsity missed
    the target by more than 0.5 points are drawn hollow with a cross (and listed in the legend).
    """
    if band not in BANDS:
        raise ValueError(f"unknown band {band!r} (known: {', '.join(BANDS)})")
    if data.empty:
        raise ValueError("no finished trials to plot")
    archs = sorted(data["arch"].unique(), key=arch_sort_key)
    fig, axes = plt.subplots(1, len(archs), figsize=(4.2 * len(archs), 3.6), sharey=True, squeeze=False)
    any_off = False
    for ax, arch in zip(axes[0], archs):
        sub = data[data["arch"] == arch]
        ax.axhline(0.0, color="0.5", lw=0.8, ls="--", label="_dense reference")
        groups = sorted(sub.groupby(["method", "variant"], dropna=False),
                        key=lambda kv: (method_sort_key(kv[0][0]), str(kv[0][1])))
        for (method, variant), g in groups:
            g = g.sort_values("target")
            x, y = g["target"].to_numpy(float), g["dt_mean"].to_numpy(float)
            (line,) = ax.plot(x, y, marker="o", ms=3.5, lw=1.4, label=_label(method, variant))
            low, high = _band(g, y, band)
            if low is not None and np.isfinite(low).any():
                ax.fill_between(x, low, high, color=line.get_color(), alpha=0.15, lw=0)
            off = g["off_target"].to_numpy(bool) if "off_target" in g else np.zeros(len(g), bool)
            if off.any():
                any_off = True
                ax.scatter(x[off], y[off], s=60, facecolors="white", edgecolors=line.get_color(), zorder=3,
                           marker="o", linewidths=1.2)
                ax.scatter(x[off], y[off], s=22, color=line.get_color(), marker="x", zorder=4)
        ax.set_title(arch_label(arch))
        ax.set_xlabel("target sparsity (%)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"ΔT (%, {convention} convention)")
    if any_off:
        axes[0][-1].scatter([], [], s=40, facecolors="white", edgecolors="0.3", marker="o",
                            label="missed target by > 0.5 pt")
    axes[0][-1].legend(fontsize=8, frameon=False)
    fig.text(0.5, -0.02, _band_note(data, band), ha="center", va="top", fontsize=8)
    fig.tight_layout()
    if out is not None:
        save(fig, out)
    return fig


def _band(g: pd.DataFrame, y: np.ndarray, band: str) -> tuple[np.ndarray | None, np.ndarray | None]:
    if band == "ci" and "ci_low" in g:
        return g["ci_low"].to_numpy(float), g["ci_high"].to_numpy(float)
    if band == "std":
        sd = g["dt_std"].to_numpy(float)
        return y - sd, y + sd
    return None, None


def _band_note(data: pd.DataFrame, band: str) -> str:
    ns = sorted({int(v) for v in data["n"]})
    n = str(ns[0]) if len(ns) == 1 else f"{ns[0]}–{ns[-1]}"
    if max(ns) < 2:
        return "single seed per point (n = 1): no band"
    what = {"ci": "band: 95% CI of the mean (Student t)", "std": "band: ± 1 std", "none": "no band"}[band]
    return f"mean over n = {n} seeds; {what}"


def _series_plot(hist: pd.DataFrame, prefix: str, ylabel: str, title: str, scale: float,
                 out: str | Path | None, target: float | None = None) -> Figure:
    """One line per key under ``prefix`` (components or tasks) vs step, for one run."""
    sub = hist[hist["key"].str.startswith(prefix)]
    if sub.empty:
        raise ValueError(f"the run logged no {prefix}<...> step series")
    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    for key, g in sorted(sub.groupby("key"), key=lambda kv: (kv[0] != prefix + S.BACKBONE, kv[0])):
        g = g.sort_values("step")
        ax.plot(g["step"].to_numpy(), g["value"].to_numpy(float) * scale, lw=1.4, label=D.series_name(key))
    if target is not None:
        ax.axhline(target * scale, color="0.3", lw=1.0, ls="--", label=f"target ({target * scale:g}%)")
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    if out is not None:
        save(fig, out)
    return fig


def plot_allocation(hist: pd.DataFrame, out: str | Path | None = None, title: str = "",
                    target: float | None = None) -> Figure:
    """Fig. 3: sparsity (%) per component vs step, from the ``sparsity/<component>`` histories, with the
    run's target overall sparsity (a fraction) as a dashed line."""
    return _series_plot(hist, S.SPARSITY_PREFIX, "sparsity (%)", title or "sparsity allocation", 100.0, out,
                        target)


def plot_weights(hist: pd.DataFrame, out: str | Path | None = None, title: str = "") -> Figure:
    """Adaptive loss weight β per task vs step, from the ``train/weight/<task>`` histories."""
    return _series_plot(hist, S.TRAIN_WEIGHT_PREFIX, "β (task weight)", title or "adaptive task weights", 1.0,
                        out)


def plot_sensitivity(scored: pd.DataFrame, out: str | Path | None = None,
                     tasks: Sequence[str] | None = None) -> Figure:
    """Fig. 5-style: ΔT over (backbone sparsity, mean head sparsity) of scored runs: one marker per method
    (legend), colour = ΔT (colour bar shared by all methods).

    ``scored``: :func:`results.tables.score_runs` output (trials only are used).
    """
    from results.collect import metric_col
    from results.tables import DT_PREFIX

    trials = scored[scored[S.TAG_ROLE] == S.ROLE_TRIAL]
    heads = [c for c in trials.columns if c.startswith(metric_col(S.final_sparsity(S.HEAD_PREFIX)))]
    back = metric_col(S.final_sparsity(S.BACKBONE))
    if trials.empty or back not in trials or not heads:
        raise ValueError("no trials with final backbone and head sparsity to plot")
    z_all = trials[DT_PREFIX + S.OVERALL].to_numpy(float)
    finite = z_all[np.isfinite(z_all)]
    norm = matplotlib.colors.Normalize(*(finite.min(), finite.max()) if finite.size else (0.0, 1.0))
    fig, ax = plt.subplots(figsize=(4.8, 3.8))
    variants = trials[S.TAG_VARIANT] if S.TAG_VARIANT in trials else pd.Series("", index=trials.index)
    keys = sorted({(m, v if isinstance(v, str) else "") for m, v in zip(trials[S.TAG_METHOD], variants)},
                  key=lambda mv: (method_sort_key(mv[0]), mv[1]))
    sc = None
    for k, (method, variant) in enumerate(keys):
        sel = (trials[S.TAG_METHOD] == method).to_numpy() & (variants.fillna("") == variant).to_numpy()
        sub = trials[sel]
        x = sub[back].to_numpy(float) * 100
        y = sub[heads].mean(axis=1).to_numpy(float) * 100
        z = sub[DT_PREFIX + S.OVERALL].to_numpy(float)
        sc = ax.scatter(x, y, c=z, cmap="viridis", norm=norm, s=30, marker=_MARKERS[k % len(_MARKERS)],
                        edgecolors="0.2", linewidths=0.4, label=_label(method, variant))
    assert sc is not None
    fig.colorbar(sc, ax=ax, label="ΔT (%)")
    legend = ax.legend(fontsize=8, frameon=False, title="method", title_fontsize=8)
    for handle in legend.legend_handles:  # markers identify methods; colour is ΔT, so keep the key neutral
        handle.set_facecolor("0.75")
    ax.set_xlabel("backbone sparsity (%)")
    ax.set_ylabel("mean head sparsity (%)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    if out is not None:
        save(fig, out)
    return fig


_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*")
