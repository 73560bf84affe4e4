"""BibTeX (issue 14, item 8): capitals protected, the paper's own references, every table kind cites what it
compares, one ``.bib`` per sweep — checked with pdflatex + bibtex + the ``plain`` style."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from results import bibtex as B
from results import cli
from results import collect as C
from results import render as R
from results import tables as T
from tests.results_fixtures import SWEEP, sweep_store


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return sweep_store(tmp_path_factory.mktemp("results_store"))


@pytest.fixture(scope="module")
def df(store):
    return C.collect(SWEEP, tracking_uri=store["uri"], use_cache=False)


def test_protect_title():
    assert B.protect_title("AdapMTL: Adaptive Pruning for MobileNetV2") == "{AdapMTL}: Adaptive Pruning for {MobileNetV2}"
    assert B.protect_title("Fully Connected CRFs, SNIP and I") == "Fully Connected {CRFs}, {SNIP} and I"
    assert B.protect_title("{DiSparse} and \\\"{U}ber {NYUv2}") == "{DiSparse} and \\\"{U}ber {NYUv2}"  # no double braces


def test_parse_and_format_round_trip():
    text = '@comment{x}\n@Article{k1, title = "A {B}", year = 2020,\n author={X, Y}}\n@misc{k2,title={T}}'
    entries = B.parse(text)
    assert [(e.kind, e.key) for e in entries] == [("article", "k1"), ("misc", "k2")]
    assert entries[0].fields == {"title": "A {B}", "year": "2020", "author": "X, Y"}
    assert B.parse(entries[0].format())[0].fields == entries[0].fields
    with pytest.raises(ValueError, match="'bad' is not terminated"):
        B.parse("@article{bad, title={open")


def test_registry_cites_what_the_paper_cites():
    """The paper's references: DeepLab [5] (dense), LTH [13] Frankle et al. 2020 "at scale", IMP [19] Han et al.
    2015 "Deep compression", SNIP [26] Lee et al. 2018, DiSparse [51], and AdapMTL itself."""
    from trainers.methods import method_metadata

    expect = {"dense": ("chen2017deeplab", "{DeepLab}", "834--848"),
              "lth": ("frankle2020lottery", "Lottery Ticket Hypothesis at Scale", "1903.01611"),
              "imp": ("han2015deep", "Deep Compression", "1510.00149"),
              "snip": ("lee2018snip", "{SNIP}", "1810.02340"),
              "disparse": ("sun2022disparse", "{DiSparse}", "12382--12392"),
              "adapmtl": ("xiang2024adapmtl", "{AdapMTL}", "Multimedia")}
    for method, (key, title_part, detail) in expect.items():
        meta = method_metadata(method)
        (entry,) = B.parse(meta["bibtex"])
        assert entry.key == meta["bibtex_key"] == key, method
        assert title_part in entry.fields["title"] and detail in meta["bibtex"], method
        assert B.protect_title(entry.fields["title"]) == entry.fields["title"], f"{method}: unprotected capitals"
    assert "Frankle, Jonathan and Dziugaite" in method_metadata("lth")["bibtex"]


def test_every_kind_cites_its_rows(df):
    for kind in T.KINDS:
        tex = R.to_latex(T.build(kind, df))
        assert "\\cite{lee2018snip}" in tex or kind == "ablation", kind  # SNIP: not in the ablation
        assert "\\cite{xiang2024adapmtl}" in tex, kind
    sweep = R.to_latex(T.build("sweep", df))
    assert sweep.count("\\cite{lee2018snip}") == 2  # SNIP under both architectures
    assert "Dense Model~\\cite{chen2017deeplab}" in R.to_latex(T.build("comparison", df))


def test_one_bib_per_sweep(store, tmp_path, capsys):
    for kind in ("comparison", "sweep", "cost"):
        assert cli.main(["table", SWEEP, "--kind", kind, "--tracking-uri", store["uri"],
                         "--out", str(tmp_path / f"{kind}.tex")]) == 0
    bibs = sorted(p.name for p in tmp_path.glob("*.bib"))
    assert bibs == [f"{SWEEP}.bib"], bibs
    keys = [e.key for e in B.parse((tmp_path / f"{SWEEP}.bib").read_text())]
    assert keys == sorted(set(keys)) and {"lee2018snip", "frankle2020lottery", "xiang2024adapmtl",
                                          "chen2017deeplab"} <= set(keys)
    # another origin's entry in the same file survives re-exports
    bib = tmp_path / f"{SWEEP}.bib"
    bib.write_text(bib.read_text() + "\n@misc{mine2025, title={Mine}}\n")
    assert cli.main(["table", SWEEP, "--tracking-uri", store["uri"], "--out", str(tmp_path / "comparison.tex")]) == 0
    assert "mine2025" in bib.read_text() and bib.read_text().count("@article{lee2018snip") == 1


@pytest.mark.skipif(any(shutil.which(t) is None for t in ("pdflatex", "bibtex", "pdftotext")),
                    reason="pdflatex/bibtex/pdftotext not installed (apt: texlive-latex-base poppler-utils)")
def test_plain_style_keeps_the_capitals(store, tmp_path):
    assert cli.main(["table", SWEEP, "--kind", "sweep", "--tracking-uri", store["uri"],
                     "--out", str(tmp_path / "sweep.tex")]) == 0
    (tmp_path / "doc.tex").write_text(
        "\\documentclass{article}\n\\usepackage{booktabs}\n\\usepackage{graphicx}\n\\begin{document}\n"
        f"\\input{{sweep.tex}}\n\\bibliographystyle{{plain}}\n\\bibliography{{{SWEEP}}}\n\\end{{document}}\n")
    for cmd in (["pdflatex"], ["bibtex"], ["pdflatex"], ["pdflatex"]):
        args = ["doc"] if cmd == ["bibtex"] else ["-interaction=nonstopmode", "-halt-on-error", "doc.tex"]
        proc = subprocess.run(cmd + args, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stdout[-2000:]
    log = (tmp_path / "doc.log").read_text(errors="replace")
    assert "undefined" not in log, log[-2000:]  # every \cite resolved
    text = " ".join(subprocess.run(["pdftotext", "doc.pdf", "-"], cwd=tmp_path, capture_output=True, text=True,
                                   check=True).stdout.split())
    assert "AdapMTL: Adaptive pruning framework" in text and "Adapmtl" not in text
    assert "SNIP: Single-shot network pruning" in text and "The lottery ticket hypothesis at scale" in text
