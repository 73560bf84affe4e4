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

from results.disclosure import CI_NOTE
from results.latex_text import LatexLabelError, latex_text, plain_text
from results.tables import Table

__all__ = ["FORMATS", "PREAMBLE", "LatexLabelError", "cell_text", "latex_document", "latex_text", "plain_caption",
           "plain_text", "render", "to_csv", "to_frame", "to_latex", "to_markdown", "write"]

FORMATS: tuple[str, ...] = ("latex", "markdown", "csv", "terminal")
PREAMBLE = r"\usepackage{booktabs}\usepackage{graphicx}"


def plain_caption(caption: str) -> str:
    """The LaTeX caption as plain text for Markdown/CSV/terminal readers."""
    s = re.sub(r"\$\\Delta_\{T_\{?(\w+)\}?\}\$", r"ΔT_\1", caption)
    for tex, sym in ((r"$\Delta_T$", "ΔT"), (r"$\pm$", "±"), (r"$\dagger$", "†"), (r"$\times$", "×"),
                     (r"\%", "%"), (r"\_", "_"), (r"\&", "&"), (r"\#", "#"), (r"\{", "{"), (r"\}", "}"),
                     (r"\textasciitilde{}", "~"), (r"\^{}", "^"), ("Table~", "Table ")):
        s = s.replace(tex, sym)
    return plain_text(s)


# -- cells ------------------------------------------------------------------------------------------
def _number(value: float, decimals: int, signed: bool) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if round(value, decimals) == 0:
        value = 0.0  # no "-0.00"
    return f"{value:+.{decimals}f}" if signed and value != 0 else f"{value:.{decimals}f}"


#: where the seed std goes in LaTeX: under the mean (default: the column stays as narrow as the number),
#: after it, nowhere (the caption says so), or in a second table of stds
STD_PLACEMENTS: tuple[str, ...] = ("stacked", "inline", "none", "separate")


def cell_text(table: Table, i: int, j: int, fmt: str, marks: pd.DataFrame | None = None,
              std_mode: str = "inline") -> str:
    """Cell (row i, column j): mean (bold when significantly best or best of a single seed, underlined when
    tied for best), ``± std`` when the row has several seeds, a cell marker ("†"); "–" when missing.
    Positional, because cost/sweep tables may repeat a row label."""
    mean = table.values.iat[i, j]
    if pd.isna(mean):
        return "--" if fmt == "latex" else "–"
    col = table.values.columns[j]
    d = table.decimals.get(col, 2)
    text = _number(float(mean), d, col in table.signed)
    if fmt == "latex" and text.startswith("-"):
        text = "$-$" + text[1:]
    marks = table.marks if marks is None else marks
    mark = marks.iat[i, j]
    if mark in ("best", "single"):
        text = rf"\textbf{{{text}}}" if fmt == "latex" else f"**{text}**"
    elif mark == "tied":
        text = rf"\underline{{{text}}}" if fmt == "latex" else f"_{text}_"
    note = table.cell_marks.get((i, j))
    if note:
        text += r"$^\dagger$" if fmt == "latex" and note == "†" else note
    std = table.std.iat[i, j]
    row = table.values.index[i]
    is_ref_score = row in table.reference_rows and "ΔT" in _flat(col)  # 0 by construction: no "± 0.00"
    if std_mode in ("none", "separate"):
        return text
    if pd.notna(std) and int(table.n.iat[i]) > 1 and not is_ref_score and round(float(std), d) != 0:
        sd = _number(float(std), d, False)
        if fmt != "latex":
            text += f" ± {sd}"
        elif std_mode == "stacked":
            text = rf"\shortstack{{{text}\\{{\scriptsize$\pm${sd}}}}}"
        else:
            text += rf"{{\scriptsize\,$\pm$\,{sd}}}"
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


def _with_mark(label: object, mark: str | None, fmt: str) -> object:
    """A row label with its off-target marker ("AdapMTL † 78.8%")."""
    if not mark:
        return label
    if isinstance(label, tuple):
        return (*label[:-1], _with_mark(label[-1], mark, fmt))
    if fmt == "latex":
        return f"{label}$^\\dagger$ ({latex_text(mark.removeprefix('† '))})"
    return f"{label} {mark}"


def ci_texts(table: Table, fmt: str) -> list[str]:
    """The "[low, high]" 95 % CI of the overall ΔT per row ("" where there is none)."""
    out = []
    for i in range(len(table.values)):
        lo_hi = table.ci.get(i)
        if lo_hi is None:
            out.append("")
            continue
        lo, hi = (_number(v, 2, True) for v in lo_hi)
        if fmt == "latex":
            lo, hi = (x.replace("-", "$-$") for x in (lo, hi))
        out.append(f"[{lo}, {hi}]")
    return out


def _ci_key(table: Table) -> object:
    return ("", "95% CI") if isinstance(table.values.columns, pd.MultiIndex) else "95% CI"


# -- LaTeX ------------------------------------------------------------------------------------------
def to_latex(table: Table, ci: bool = False, std: str = "stacked") -> str:
    """A complete ``table``/``table*`` float (booktabs, multi-level header, caption with the ΔT convention).

    ``std``: see :data:`STD_PLACEMENTS`; ``separate`` appends a second float with the stds. Columns are
    set with ``\tabcolsep`` 2pt, and a table wider than the line is shrunk to it (never enlarged).
    """
    if std not in STD_PLACEMENTS:
        raise ValueError(f"unknown std placement {std!r} (known: {', '.join(STD_PLACEMENTS)})")
    marks = table.marks
    shape = table.values.shape
    cells = pd.DataFrame(
        [[cell_text(table, i, j, "latex", marks, std) for j in range(shape[1])] for i in range(shape[0])],
        columns=_latex_columns(table.values.columns),
    )
    if ci and table.ci:
        key = _ci_key(table)
        cells[tuple(latex_text(p) for p in key) if isinstance(key, tuple) else latex_text(key)] = \
            ci_texts(table, "latex")
    if _show_n(table):
        n_key = ("", "n") if isinstance(table.values.columns, pd.MultiIndex) else "n"
        cells[n_key] = [str(int(v)) for v in table.n]
    names = list(table.values.index.names)
    labels = [_with_mark(_row_label(table, r, "latex"), table.row_marks.get(i), "latex")
              for i, r in enumerate(table.values.index)]
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
    caption = f"{table.caption} {CI_NOTE}" if ci and table.ci else table.caption
    if std == "none" and _show_n(table):
        caption += " Seed standard deviations are omitted here (see the CSV export)."
    elif std == "separate" and _show_n(table):
        caption += f" Standard deviations over seeds: Table~\\ref{{{table.label}-std}}."
    out = _float(env, caption, table.label, tabular)
    if std == "separate" and _show_n(table):
        out += _std_float(table, env)
    return out


def _float(env: str, caption: str, label: str, tabular: str) -> str:
    return "\n".join([
        f"% Generated by adapmtl (results.render). Preamble: {PREAMBLE}",
        f"\\begin{{{env}}}[t]",
        "\\centering",
        "\\setlength{\\tabcolsep}{2pt}",
        f"\\caption{{{caption}}}",
        f"\\label{{{label}}}",
        # shrink to the line width when too wide, never enlarge a narrow table
        "\\resizebox{\\ifdim\\width>\\linewidth\\linewidth\\else\\width\\fi}{!}{%",
        tabular.rstrip("\n"),
        "}",
        f"\\end{{{env}}}",
        "",
    ])


def _std_float(table: Table, env: str) -> str:
    """The seed standard deviations of ``table`` as a table of their own (``--std separate``)."""
    shape = table.values.shape
    cells = pd.DataFrame(
        [["" if pd.isna(table.std.iat[i, j]) else _number(float(table.std.iat[i, j]),
                                                        table.decimals.get(table.values.columns[j], 2), False)
          for j in range(shape[1])] for i in range(shape[0])],
        columns=_latex_columns(table.values.columns))
    labels = [_row_label(table, r, "latex") for r in table.values.index]
    cells.index = (pd.MultiIndex.from_tuples(labels) if isinstance(table.values.index, pd.MultiIndex)
                   else pd.Index(labels))
    tabular = cells.style.hide(names=True, axis="index").to_latex(
        column_format="l" * cells.index.nlevels + "c" * cells.shape[1], hrules=True, multicol_align="c",
        sparse_index=True, sparse_columns=True)
    tabular = _add_cmidrules(tabular, table.values.columns, cells.index.nlevels)
    return _float(env, f"Standard deviations over seeds of Table~\\ref{{{table.label}}} (n as there).",
                  f"{table.label}-std", tabular)


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


def to_markdown(table: Table, ci: bool = False) -> str:
    """A GitHub pipe table (group / metric headers, bold best, _tied_) with the caption as a paragraph."""
    index_names = [str(n or "") for n in table.values.index.names]
    show_ci = ci and bool(table.ci)
    header = (index_names + [_flat(c) for c in table.values.columns] + (["ΔT 95% CI"] if show_ci else [])
              + (["n"] if _show_n(table) else []))
    caption = f"{table.caption} {CI_NOTE}" if show_ci else table.caption
    lines = [f"**{table.kind.capitalize()}.** {plain_caption(caption)}", "",
             "| " + " | ".join(h.replace("|", "\\|") for h in header) + " |",
             "|" + "|".join([":---"] * len(index_names) + ["---:"] * (len(header) - len(index_names))) + "|"]
    marks = table.marks
    cis = ci_texts(table, "markdown")
    for i, r in enumerate(table.values.index):
        r = _with_mark(r, table.row_marks.get(i), "markdown")
        label = list(r) if isinstance(r, tuple) else [r]
        cells = [plain_text(x) for x in label] + [cell_text(table, i, j, "markdown", marks)
                                           for j in range(table.values.shape[1])]
        if show_ci:
            cells.append(cis[i])
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
    if table.ci:
        out["ΔT 95% CI low"] = [table.ci.get(i, (math.nan, math.nan))[0] for i in range(len(table.values))]
        out["ΔT 95% CI high"] = [table.ci.get(i, (math.nan, math.nan))[1] for i in range(len(table.values))]
    out["off_target"] = [table.row_marks.get(i, "") for i in range(len(table.values))]
    marks = table.marks
    out["best"] = [";".join(_flat(c) for j, c in enumerate(table.values.columns) if marks.iat[i, j] in
                            ("best", "single")) for i in range(len(table.values))]
    out["tied"] = [";".join(_flat(c) for j, c in enumerate(table.values.columns) if marks.iat[i, j] == "tied")
                   for i in range(len(table.values))]
    return out


def to_csv(table: Table) -> str:
    return to_frame(table).to_csv(index=False)


def render(table: Table, fmt: str, ci: bool | None = None, std: str = "stacked") -> str:
    """The table in ``fmt``; ``ci`` adds the 95 % CI column of the overall ΔT (default: on, except in LaTeX
    where print width is scarce; CSV always has it); ``std``: LaTeX std placement (:data:`STD_PLACEMENTS`)."""
    if ci is None:
        ci = fmt != "latex"
    if fmt == "latex":
        return to_latex(table, ci, std)
    if fmt == "markdown":
        return to_markdown(table, ci)
    if fmt == "csv":
        return to_csv(table)
    if fmt == "terminal":
        from results.terminal import to_terminal

        return to_terminal(table)
    raise ValueError(f"unknown format {fmt!r} (known: {', '.join(FORMATS)})")


def write(table: Table | list[Table], fmt: str, out: str | Path, *, bib: str | Path | None = None,
          ci: bool | None = None, std: str = "stacked") -> list[Path]:
    """Write the table(s); for LaTeX, merge the cited methods' BibTeX entries (capitals protected) into
    ``bib`` — the sweep's one ``.bib`` (:func:`results.bibtex.sweep_bib_path`, what ``adapmtl table``
    passes) — or, without ``bib``, into a ``.bib`` named like the table."""
    from results.bibtex import merge_into

    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    tables = table if isinstance(table, list) else [table]
    path.write_text("\n".join(render(t, fmt, ci, std) for t in tables), encoding="utf-8")
    table = tables[0]
    for extra in tables[1:]:
        table.bibtex.update(extra.bibtex)
    written = [path]
    if fmt == "latex" and table.bibtex:
        target = Path(bib) if bib is not None else path.with_suffix(".bib")
        merge_into(target, table.bibtex)
        written.append(target)
    return written
