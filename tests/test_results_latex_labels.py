"""Any label compiles with booktabs + graphicx alone (issue 14, item 1).

The compile test writes every table kind of a store whose variant labels hold ``λ & % _`` (and an explicit
``$...$`` label) into a ``twocolumn`` article with only booktabs + graphicx, runs pdflatex and reads the
text back from the PDF.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from results import collect as C
from results import render as R
from results import tables as T
from results.latex_text import LatexLabelError, latex_text, plain_text, split_math
from tests.results_fixtures import TABLE1, TABLE1_SPARSITY, log_run, scaled

NASTY = "w/o λ & 50% a_b"
EXPLICIT = r"only $\beta_{t}$ fixed"
SWEEP = "labels-sweep"


def test_specials_are_escaped():
    assert latex_text("a & b % c _ d $ e # f { g } h ~ i ^ j \\ k") == (
        r"a \& b \% c \_ d \$ e \# f \{ g \} h \textasciitilde{} i \^{} j \textbackslash{} k")


def test_greek_and_symbols_become_math():
    assert latex_text(NASTY) == r"w/o $\lambda$ \& 50\% a\_b"
    assert latex_text("α ≤ 0.5 × β") == r"$\alpha$ $\leq$ 0.5 $\times$ $\beta$"
    assert latex_text("λμ") == r"$\lambda\mu$"  # adjacent math merged (no "$$", which TeX reads as display math)
    assert latex_text("λΑ") == r"$\lambda$A"  # Greek capital with a Latin twin: the letter
    assert latex_text("ΔT3 ↑") == r"$\Delta_{T_{3}}$ $\uparrow$"
    assert latex_text("Müller – naïve") == r"M\"{u}ller -- na\"{\i}ve"


def test_explicit_math_passes_through_and_dollar_rules():
    assert latex_text(EXPLICIT) == r"only $\beta_{t}$ fixed"
    assert latex_text(r"w/o $λ$") == r"w/o $\lambda$"  # unicode inside math: the command
    assert latex_text("costs $5") == r"costs \$5"  # one dollar: literal
    assert latex_text(r"\$5 or $x$") == r"\$5 or $x$"  # escaped dollar is literal, the pair is math
    assert split_math("a $x$ b") == [(False, "a "), (True, "x"), (False, " b")]
    assert plain_text(r"w/o $\lambda$") == "w/o λ" and plain_text(EXPLICIT) == EXPLICIT


def test_unmappable_character_is_an_error_naming_the_label():
    with pytest.raises(LatexLabelError, match=r"label 'AdapMTL ☃': character '☃' \(U\+2603 SNOWMAN\)"):
        latex_text("AdapMTL ☃")
    with pytest.raises(LatexLabelError, match="unbalanced braces"):
        latex_text(r"$\frac{a$")


@pytest.fixture(scope="module")
def frame(tmp_path_factory):
    from mlflow.tracking import MlflowClient

    base = tmp_path_factory.mktemp("labels_store")
    uri = f"sqlite:///{(base / 'mlflow.db').as_posix()}"
    client = MlflowClient(uri)
    exp = client.create_experiment(SWEEP)
    arch = "resnet34"
    log_run(client, exp, method="dense", arch=arch, seed=0, target=None, values=TABLE1["dense"],
            sparsity=[0, 0, 0, 0])
    log_run(client, exp, method="snip", arch=arch, seed=0, target=0.9, values=TABLE1["snip"],
            sparsity=TABLE1_SPARSITY["snip"], val_dt=-5.0)
    log_run(client, exp, method="adapmtl", arch=arch, seed=0, target=0.9, values=TABLE1["adapmtl"],
            sparsity=TABLE1_SPARSITY["adapmtl"], val_dt=2.0)
    log_run(client, exp, method="adapmtl", arch=arch, seed=0, target=0.9, values=TABLE1["wo_thr"],
            sparsity=TABLE1_SPARSITY["wo_thr"], val_dt=0.0, variant=NASTY)
    log_run(client, exp, method="adapmtl", arch=arch, seed=0, target=0.9, values=scaled(TABLE1["adapmtl"], 0.99),
            sparsity=TABLE1_SPARSITY["adapmtl"], val_dt=1.0, variant=EXPLICIT)
    return C.collect(SWEEP, tracking_uri=uri, use_cache=False)


def _all_kinds(df):
    return [T.build(kind, df) for kind in T.KINDS]


def test_every_kind_typesets_the_labels(frame):
    for table in _all_kinds(frame):
        tex = R.to_latex(table)
        assert r"w/o $\lambda$ \& 50\% a\_b" in tex, table.kind
        assert r"only $\beta_{t}$ fixed" in tex, table.kind
        assert "λ" not in tex
        md = R.to_markdown(table)
        assert NASTY in md and EXPLICIT in md  # Markdown keeps the label as written


def test_unmappable_label_in_a_table_is_one_clear_error(frame):
    df = frame.copy()
    df.loc[df["variant"] == NASTY, "variant"] = "w/o ☃"
    with pytest.raises(LatexLabelError, match="'AdapMTL w/o ☃'"):
        R.to_latex(T.comparison(df))


@pytest.mark.skipif(shutil.which("pdflatex") is None or shutil.which("pdftotext") is None,
                    reason="pdflatex/pdftotext not installed (apt: texlive-latex-base texlive-latex-recommended "
                           "poppler-utils)")
def test_all_kinds_compile_with_booktabs_and_graphicx_alone(frame, tmp_path):
    body = "\n".join(R.to_latex(t) for t in _all_kinds(frame))
    doc = ("\\documentclass[twocolumn]{article}\n\\usepackage{booktabs}\n\\usepackage{graphicx}\n"
           "\\begin{document}\n" + body + "\n\\end{document}\n")
    (tmp_path / "doc.tex").write_text(doc, encoding="utf-8")
    proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:]
    text = subprocess.run(["pdftotext", "doc.pdf", "-"], cwd=tmp_path, capture_output=True, text=True,
                          check=True).stdout
    assert text.count("w/o λ & 50% a") >= len(T.KINDS), text  # typeset (rows, and captions), not dropped
