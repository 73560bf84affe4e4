"""LaTeX / Markdown / CSV export; the LaTeX compiles with pdflatex and page 1 is not blank."""

from __future__ import annotations

import io
import shutil
import subprocess

import pandas as pd
import pytest

from results import collect as C
from results import render as R
from results import tables as T
from tests.results_fixtures import SWEEP, sweep_store


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    store = sweep_store(tmp_path_factory.mktemp("results_store"))
    df = C.collect(SWEEP, tracking_uri=store["uri"], use_cache=False)
    return T.comparison(df, arch="resnet34", sparsity=0.9)


def test_latex_text_escapes_and_typesets():
    assert R.latex_text("a_b 50% & #1") == r"a\_b 50\% \& \#1"
    assert R.latex_text("mIoU ↑") == r"mIoU $\uparrow$"
    assert R.latex_text("ΔT2 ↓ ±") == r"$\Delta_{T_{2}}$ $\downarrow$ $\pm$"
    assert R.latex_text("ΔT") == r"$\Delta_T$" and R.latex_text("1.25²") == "1.25$^2$"


def test_latex_structure(table):
    tex = R.to_latex(table)
    assert "\\toprule" in tex and "\\midrule" in tex and "\\bottomrule" in tex
    assert "\\multicolumn{3}{c}{T1: Semantic Seg.}" in tex and "\\cmidrule(lr){2-4}" in tex
    assert "mIoU $\\uparrow$" in tex and "Mean $\\downarrow$" in tex and "Sparsity \\%" in tex
    assert ("\\textbf{" in tex or "\\underline{" in tex) and "$\\pm$" in tex
    assert "\\caption{" in tex and "sum over the task's metrics" in tex
    assert "Method &" in tex  # index name in the header corner, like the paper's "Model"
    assert "↑" not in tex and "±" not in tex and "Δ" not in tex  # no raw unicode left
    if table.citations:  # registry metadata available → \cite{key}
        assert "\\cite{" in tex


def test_markdown_and_csv(table):
    md = R.to_markdown(table)
    assert "| Method |" in md and ("**" in md or "_" in md) and "T1: Semantic Seg. / mIoU ↑" in md
    assert "\\" not in md.split("\n")[0].replace("\\|", "")  # caption de-LaTeXed
    frame = pd.read_csv(io.StringIO(R.to_csv(table)))
    assert {"Method", "ΔT ↑", "ΔT ↑ std", "n", "best", "tied", "ΔT 95% CI low"} <= set(frame.columns)
    lth = frame.set_index("Method").loc["LTH"]
    assert lth["ΔT ↑"] == pytest.approx(table.values.loc["LTH", ("", "ΔT ↑")])


@pytest.mark.skipif(shutil.which("pdflatex") is None or shutil.which("pdftoppm") is None,
                    reason="pdflatex/pdftoppm not installed (apt: texlive-latex-base texlive-latex-recommended "
                           "poppler-utils)")
def test_latex_compiles_and_page_is_not_blank(table, tmp_path):
    doc = tmp_path / "doc.tex"
    doc.write_text(R.latex_document(R.to_latex(table), table.references), encoding="utf-8")
    proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:]
    subprocess.run(["pdftoppm", "-png", "-r", "60", "-f", "1", "-l", "1", "doc.pdf", "page"], cwd=tmp_path,
                   check=True, timeout=60)
    png = next(tmp_path.glob("page*.png"))
    import matplotlib.image as mpimg

    img = mpimg.imread(png)
    gray = img[..., :3].mean(axis=2)
    assert (gray < 0.5).mean() > 0.002  # some dark (text) pixels


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed")
def test_three_seed_comparison_prints_at_readable_size_in_two_columns(tmp_path):
    """The default comparison table with 3 seeds, in a two-column article's table*, is scaled by ≥ 0.6
    (measured by LaTeX itself: the natural width of the tabular against \\linewidth)."""
    from mlflow.tracking import MlflowClient

    from results import tables as T
    from tests.results_fixtures import TABLE1, TABLE1_SPARSITY, log_run, scaled

    uri = f"sqlite:///{tmp_path / 'm.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("test-sweep")
    for seed, f in enumerate((1.0, 1.01, 0.99)):
        log_run(client, exp, method="dense", arch="resnet34", seed=seed, target=None,
                values=scaled(TABLE1["dense"], f), sparsity=[0, 0, 0, 0])
        for m in ("snip", "lth", "adapmtl"):
            log_run(client, exp, method=m, arch="resnet34", seed=seed, target=0.9, values=scaled(TABLE1[m], f),
                    sparsity=TABLE1_SPARSITY[m], val_dt=0.0)
    table = T.comparison(C.collect("test-sweep", tracking_uri=uri, use_cache=False), sparsity=0.9)
    assert int(table.n.min()) == 3
    measure = (r"\newsavebox\tbox\let\origresizebox\resizebox"
               r"\renewcommand{\resizebox}[3]{\sbox\tbox{#3}\typeout{TABLEWIDTH=\the\wd\tbox;"
               r"LINEWIDTH=\the\linewidth}\origresizebox{#1}{#2}{\usebox\tbox}}")
    doc = (f"\\documentclass[twocolumn]{{article}}\n{R.PREAMBLE}\n{measure}\n\\begin{{document}}\n"
           f"{R.to_latex(table)}\n\\end{{document}}\n")
    (tmp_path / "doc.tex").write_text(doc, encoding="utf-8")
    proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:]
    import re

    found = re.search(r"TABLEWIDTH=([\d.]+)pt;LINEWIDTH=([\d.]+)pt", proc.stdout)
    assert found, proc.stdout[-1000:]
    width, line = float(found.group(1)), float(found.group(2))
    scale = min(1.0, line / width)
    print(f"comparison, 3 seeds: {width:.0f}pt natural on a {line:.0f}pt line, scale {scale:.2f}")
    assert scale >= 0.6, f"natural width {width:.0f}pt on a {line:.0f}pt line: scale {scale:.2f}"
    # the inline ± placement is the wide one this default replaces
    inline = R.to_latex(table, std="inline")
    assert "\\shortstack" in R.to_latex(table) and "\\shortstack" not in inline
