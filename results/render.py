"""Render a :class:`results.tables.Table` as LaTeX (camera-ready), Markdown or CSV.

LaTeX goes through pandas' Styler (multi-level headers as ``\\multicolumn``, booktabs rules); we only
pre-typeset the cells and header texts (:func:`results.latex_text.latex_text`: LaTeX specials escaped,
Greek and symbols as math, ``$...$`` in a label passed through, anything unmappable an error naming the
label; bold best), add ``\\cmidrule`` under column groups and wrap the tabular in a
``table`` float with the caption (which states the ΔT convention) and a ``\\resizebox`` so wide tables fit.
Needs ``\\usepackage{booktabs,graphicx}``; no multirow/siunitx, so it compiles with texlive-latex-base +
texlive-latex-recommended.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd

from results.latex_text import LatexLabelError, latex_text, plain_text
from results.tables import Table

__all__ = ["FORMATS", "PREAMBLE", "LatexLabelError", "cell_text", "latex_document", "latex_text", "plain_caption",
           "plain_text", "render", "to_csv", "to_frame", "to_latex", "to_markdown", "write"]

FORMATS: tuple[str, ...] = ("latex", "markdown", "csv")
PREAMBLE = r"\usepackage{booktabs}\usepackage{graphicx}"


def plain_caption(caption: str) -> str:
    """The LaTeX caption as plain text for Markdown/CSV readers."""
    s = re.sub(r"\$\\Delta_\{T_\{?(\w+)\}?\}\$", r"ΔT_\1", caption)
    for tex, sym in ((r"$\Delta_T$", "ΔT"), (r"$\pm$", "±"), (r"\%", "%"), (r"\_", "_")):
        s = s.replace(tex, sym)
    return s


# -- cells ------------------------------------------------------------------------------------------
def _number(value: float, decimals: int, signed: bool) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if round(value, decimals) == 0:
        value = 0.0  # no "-0.00"
    return f"{value:+.{decimals}f}" if signed and value != 0 else f"{value:.{decimals}f}"


def cell_text(table: Table, i: int, j: int, fmt: str, best: pd.DataFrame | None = None) -> str:
    """Cell (row i, column j): mean (bold when best), ``± std`` when the row has several seeds; "–" when
    missing. Positional, because cost/sweep tables may repeat a row label."""
    mean = table.values.iat[i, j]
    if pd.isna(mean):
        return "--" if fmt == "latex" else "–"
    col = table.values.columns[j]
    d = table.decimals.get(col, 2)
    text = _number(float(mean), d, col in table.signed)
    if fmt == "latex" and text.startswith("-"):
        text = "$-$" + text[1:]
    best = table.best if best is None else best
    if bool(best.iat[i, j]):
        text = rf"\textbf{{{text}}}" if fmt == "latex" else f"**{text}**"
    std = table.std.iat[i, j]
    row = table.values.index[i]
    is_ref_score = row in table.reference_rows and "ΔT" in _flat(col)  # 0 by construction: no "± 0.00"
    if pd.notna(std) and int(table.n.iat[i]) > 1 and not is_ref_score and round(float(std), d) != 0:
        sd = _number(float(std), d, False)
        text += rf"{{\scriptsize\,$\pm$\,{sd}}}" if fmt == "latex" else f" ± {sd}"
    return text


def _row_label(table: Table, label: object, fmt: str) -> object:
    """A row label typeset for ``fmt``, with ``\\cite`` after its last part when the row cites a method
    (citations are keyed by the whole label or, in tables with an architecture level, by its last part)."""
    key = table.citations.get(label)
    if isinstance(label, tuple):
        key = key or table.citations.get(label[-1])
        parts = [latex_text(p) if fmt == "latex" else p for p in label]
        if key and fmt == "latex":
            parts[-1] = f"{parts[-1]}~\\cite{{{key}}}"
        return tuple(parts)
    text = latex_text(label) if fmt == "latex" else str(label)
    return f"{text}~\\cite{{{key}}}" if key and fmt == "latex" else text


def _show_n(table: Table) -> bool:
    return bool(len(table.n)) and int(table.n.max()) > 1


# -- LaTeX ------------------------------------------------------------------------------------------
def to_latex(table: Table) -> str:
    """A complete ``table``/``table*`` float (booktabs, multi-level header, caption with the ΔT convention)."""
    best = table.best
    shape = table.values.shape
    cells = pd.DataFrame(
        [[cell_text(table, i, j, "latex", best) for j in range(shape[1])] for i in range(shape[0])],
        columns=_latex_columns(table.values.columns),
    )
    if _show_n(table):
        n_key = ("", "n") if isinstance(table.values.columns, pd.MultiIndex) else "n"
        cells[n_key] = [str(int(v)) for v in table.n]
    names = list(table.values.index.names)
    labels = [_row_label(table, r, "latex") for r in table.values.index]
    if isinstance(table.values.index, pd.MultiIndex):
        cells.index = pd.MultiIndex.from_tuples(labels, names=[latex_text(n) for n in names])
    else:
        cells.index = pd.Index(labels, name=latex_text(names[0] or ""))
    n_index = cells.index.nlevels
    styler = cells.style.hide(names=True, axis="index")
    tabular = styler.to_latex(
        column_format="l" * n_index + "c" * cells.shape[1],
        hrules=True, multicol_align="c", multirow_align="naive", sparse_index=True, sparse_columns=True,
    )
    tabular = _add_cmidrules(tabular, table.values.columns, n_index)
    tabular = _corner_names(tabular, [latex_text(n or "") for n in names])
    env = "table*" if cells.shape[1] > 10 else "table"
    return "\n".join([
        f"% Generated by adapmtl (results.render). Preamble: {PREAMBLE}",
        f"\\begin{{{env}}}[t]",
        "\\centering",
        f"\\caption{{{table.caption}}}",
        f"\\label{{{table.label}}}",
        # shrink to the line width when too wide, never enlarge a narrow table
        "\\resizebox{\\ifdim\\width>\\linewidth\\linewidth\\else\\width\\fi}{!}{%",
        tabular.rstrip("\n"),
        "}",
        f"\\end{{{env}}}",
        "",
    ])


def _latex_columns(columns: pd.Index) -> pd.Index:
    if isinstance(columns, pd.MultiIndex):
        return pd.MultiIndex.from_tuples([tuple(latex_text(p) for p in c) for c in columns])
    return pd.Index([latex_text(c) for c in columns])


def _add_cmidrules(tabular: str, columns: pd.Index, offset: int) -> str:
    """booktabs ``\\cmidrule(lr)`` under each named column group (Styler does not emit them)."""
    if not isinstance(columns, pd.MultiIndex):
        return tabular
    rules, start = [], offset + 1
    top = list(columns.get_level_values(0))
    i = 0
    while i < len(top):
        j = i
        while j + 1 < len(top) and top[j + 1] == top[i]:
            j += 1
        if top[i]:
            rules.append(rf"\cmidrule(lr){{{start + i}-{start + j}}}")
        i = j + 1
    lines = tabular.split("\n")
    for k, line in enumerate(lines):
        if line.strip() == r"\toprule":
            lines.insert(k + 2, " ".join(rules))
            break
    return "\n".join(lines)


def _corner_names(tabular: str, names: list[str]) -> str:
    """Put the index names (e.g. "Method") in the top-left cells of the last header row, as the paper."""
    lines = tabular.split("\n")
    for k, line in enumerate(lines):
        if line.strip() == r"\midrule":
            head = lines[k - 1]
            prefix = " & " * len(names)
            if head.startswith(prefix.lstrip()) or head.startswith(prefix):
                cells = head.split("&")
                for i, name in enumerate(names):
                    cells[i] = f" {name} " if i else f"{name} "
                lines[k - 1] = "&".join(cells)
            break
    return "\n".join(lines)


def latex_document(body: str, references: dict[str, str] | None = None) -> str:
    """A minimal compilable document around table floats (tests, previews). ``references`` (BibTeX key →
    text, e.g. ``Table.references``) become a ``thebibliography`` so citations resolve without bibtex."""
    bib = ""
    if references:
        items = "\n".join(f"\\bibitem{{{k}}} {latex_text(v)}" for k, v in references.items())
        bib = f"\n\\begin{{thebibliography}}{{9}}\n{items}\n\\end{{thebibliography}}"
    return ("\\documentclass{article}\n\\usepackage[margin=1.5cm,landscape]{geometry}\n"
            f"{PREAMBLE}\n\\pagestyle{{empty}}\n\\begin{{document}}\n{body}{bib}\n\\end{{document}}\n")


# -- Markdown / CSV -----------------------------------------------------------------------------------
def _flat(col: object) -> str:
    if isinstance(col, tuple):
        parts = [str(p) for p in col if str(p)]
        return " / ".join(parts)
    return str(col)


def to_markdown(table: Table) -> str:
    """A GitHub pipe table (group / metric headers, bold best) with the caption as a paragraph."""
    index_names = [str(n or "") for n in table.values.index.names]
    header = index_names + [_flat(c) for c in table.values.columns] + (["n"] if _show_n(table) else [])
    lines = [f"**{table.kind.capitalize()}.** {plain_caption(table.caption)}", "",
             "| " + " | ".join(h.replace("|", "\\|") for h in header) + " |",
             "|" + "|".join([":---"] * len(index_names) + ["---:"] * (len(header) - len(index_names))) + "|"]
    best = table.best
    for i, r in enumerate(table.values.index):
        label = list(r) if isinstance(r, tuple) else [r]
        cells = [plain_text(x) for x in label] + [cell_text(table, i, j, "markdown", best)
                                           for j in range(table.values.shape[1])]
        if _show_n(table):
            cells.append(str(int(table.n.iat[i])))
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def to_frame(table: Table) -> pd.DataFrame:
    """Flat numeric frame: label column(s), each column's mean, its ``std`` and n (for CSV / pandas users)."""
    out = table.values.index.to_frame(index=False)
    for c in table.values.columns:
        out[_flat(c)] = table.values[c].to_numpy()
        out[f"{_flat(c)} std"] = table.std[c].to_numpy()
    out["n"] = table.n.to_numpy()
    best = table.best
    out["best"] = [";".join(_flat(c) for j, c in enumerate(table.values.columns) if best.iat[i, j])
                   for i in range(len(table.values))]
    return out


def to_csv(table: Table) -> str:
    return to_frame(table).to_csv(index=False)


def render(table: Table, fmt: str) -> str:
    if fmt == "latex":
        return to_latex(table)
    if fmt == "markdown":
        return to_markdown(table)
    if fmt == "csv":
        return to_csv(table)
    raise ValueError(f"unknown format {fmt!r} (known: {', '.join(FORMATS)})")


def write(table: Table, fmt: str, out: str | Path, *, bib: str | Path | None = None) -> list[Path]:
    """Write the table; for LaTeX, merge the cited methods' BibTeX entries (capitals protected) into
    ``bib`` — the sweep's one ``.bib`` (:func:`results.bibtex.sweep_bib_path`, what ``adapmtl table``
    passes) — or, without ``bib``, into a ``.bib`` named like the table."""
    from results.bibtex import merge_into

    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(table, fmt), encoding="utf-8")
    written = [path]
    if fmt == "latex" and table.bibtex:
        target = Path(bib) if bib is not None else path.with_suffix(".bib")
        merge_into(target, table.bibtex)
        written.append(target)
    return written
