"""A comparison that reads at a terminal: ΔT per task, overall ΔT with its CI, achieved sparsity, n.

The full paper tables are wide (the NYUv2 comparison has 20+ columns); a terminal needs the result at a
glance, within 100 columns, with the same ranking marks and the same disclosure (conventions, seeds, budget)
as the tables, wrapped to the width. Marks: ``*`` significantly best (or best of a single seed), ``~`` tied
for best, ``†`` missed the sparsity target (its achieved value printed).
"""

from __future__ import annotations

import shutil
import textwrap

import pandas as pd

from results.render import _number, plain_caption
from results.tables import Table

__all__ = ["MAX_WIDTH", "to_terminal"]

MAX_WIDTH = 100
_MARK = {"best": "*", "single": "*", "tied": "~"}


def to_terminal(table: Table, width: int | None = None) -> str:
    """The table as fixed-width text no wider than ``width`` (default: the terminal, at most 100)."""
    width = min(width or shutil.get_terminal_size((MAX_WIDTH, 24)).columns, MAX_WIDTH)
    cols = list(table.values.columns)
    marks = table.marks
    show_n = len(table.n) and int(table.n.max()) > 1
    headers = [_short(c) for c in cols] + (["95% CI"] if table.ci else []) + (["n"] if show_n else [])
    body: list[list[str]] = []
    for i, label in enumerate(table.values.index):
        name = " / ".join(str(p) for p in label) if isinstance(label, tuple) else str(label)
        if i in table.row_marks:
            name += f" {table.row_marks[i]}"
        cells = []
        for j, c in enumerate(cols):
            v = table.values.iat[i, j]
            text = "–" if pd.isna(v) else _number(float(v), table.decimals.get(c, 2), c in table.signed)
            text += _MARK.get(marks.iat[i, j], "") + ("†" if (i, j) in table.cell_marks else "")
            cells.append(text)
        if table.ci:
            lo_hi = table.ci.get(i)
            cells.append("" if lo_hi is None else f"[{lo_hi[0]:+.1f}, {lo_hi[1]:+.1f}]")
        if show_n:
            cells.append(str(int(table.n.iat[i])))
        body.append([name, *cells])
    widths = [max(len(h), *(len(r[k + 1]) for r in body)) for k, h in enumerate(headers)]
    room = width - sum(w + 2 for w in widths)
    name_w = max(12, min(max(len(r[0]) for r in body), room))
    lines = ["  ".join([f"{'':<{name_w}}", *(f"{h:>{w}}" for h, w in zip(headers, widths))]).rstrip()]
    for r in body:
        name = r[0] if len(r[0]) <= name_w else r[0][: name_w - 1] + "…"
        lines.append("  ".join([f"{name:<{name_w}}", *(f"{c:>{w}}" for c, w in zip(r[1:], widths))]).rstrip())
    legend = (plain_caption(table.caption).replace("Bold: ", "*: ").replace("underlined: ", "~: ")
              .replace("bold marks", "* marks"))
    lines.append("")
    lines.extend(textwrap.wrap(legend, width=width))
    return "\n".join(line[:width] for line in lines) + "\n"


def _short(col: object) -> str:
    """"ΔT1 ↑" → "ΔT1"; ("Sparsity %", "Overall") → "Spars %"."""
    text = " ".join(str(p) for p in col if str(p)) if isinstance(col, tuple) else str(col)
    return text.replace(" ↑", "").replace(" ↓", "").replace("Sparsity %", "Spars%")
