"""BibTeX for the tables' citations: parse the registry's entries, protect capitals, one ``.bib`` per sweep.

Why: bibliography styles re-case titles (``plain`` prints "Adapmtl: adaptive pruning ..."), so acronyms and
camel-case names must be braced (``{AdapMTL}``, ``{SNIP}``, ``{DeepLab}``, ``{CRFs}``). The registry's
entries are written braced already; :func:`protect_title` applies the same rule to any entry a newly
registered method brings. And a paper has one bibliography: every table exported from a sweep adds its
entries to the same ``<sweep>.bib`` next to it (merged by key, entries of other origin kept untouched)
instead of one ``.bib`` per table that the author must merge by hand.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["BibEntry", "merge_into", "normalise", "parse", "protect_title", "sweep_bib_path"]


@dataclass
class BibEntry:
    """One ``@kind{key, field = {value}, ...}`` entry; field values are kept verbatim (without the outer
    delimiters), in order."""

    kind: str
    key: str
    fields: dict[str, str] = field(default_factory=dict)

    def format(self) -> str:
        width = max((len(k) for k in self.fields), default=0)
        body = ",\n".join(f"  {k.ljust(width)} = {{{v}}}" for k, v in self.fields.items())
        return f"@{self.kind}{{{self.key},\n{body}\n}}"


_ENTRY_START = re.compile(r"@(\w+)\s*\{\s*([^,\s]+)\s*,", re.S)


def parse(text: str) -> list[BibEntry]:
    """The entries of a ``.bib`` text (``@comment``/``@string``/``@preamble`` are skipped). Raises
    ValueError on an unterminated entry, naming its key."""
    entries = []
    pos = 0
    while True:
        m = _ENTRY_START.search(text, pos)
        if not m:
            return entries
        kind, key = m.group(1), m.group(2)
        end = _closing(text, text.index("{", m.start()), key)
        if kind.lower() in ("comment", "string", "preamble"):
            pos = end + 1
            continue
        entries.append(BibEntry(kind.lower(), key, _fields(text[m.end():end], key)))
        pos = end + 1


def _closing(text: str, open_at: int, key: str) -> int:
    """Index of the ``}`` that closes the ``{`` at ``open_at`` (in entry ``key``)."""
    depth = 0
    for i in range(open_at, len(text)):
        if text[i] == "{" and text[i - 1] != "\\":
            depth += 1
        elif text[i] == "}" and text[i - 1] != "\\":
            depth -= 1
            if depth == 0:
                return i
    raise ValueError(f"BibTeX entry {key!r} is not terminated (unbalanced braces)")


def _fields(body: str, key: str) -> dict[str, str]:
    out: dict[str, str] = {}
    i = 0
    while i < len(body):
        m = re.compile(r"\s*,?\s*(\w[\w-]*)\s*=\s*").match(body, i)
        if not m:
            if body[i:].strip(" \t\n,"):
                raise ValueError(f"BibTeX entry {key!r}: cannot read {body[i:i + 30].strip()!r}")
            break
        name = m.group(1).lower()
        j = m.end()
        if j < len(body) and body[j] == "{":
            end = _closing(body, j, key)
            value, i = body[j + 1:end], end + 1
        elif j < len(body) and body[j] == '"':
            end = body.index('"', j + 1)
            value, i = body[j + 1:end], end + 1
        else:
            vm = re.compile(r"[^,\s}]+").match(body, j)
            if not vm:
                raise ValueError(f"BibTeX entry {key!r}: field {name!r} has no value")
            value, i = vm.group(0), vm.end()
        out[name] = value.strip()
    return out


# -- capitals -------------------------------------------------------------------------------------------
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9]*")


def _needs_protection(word: str) -> bool:
    """Acronyms and camel case (``SNIP``, ``AdapMTL``, ``CRFs``, ``MobileNetV2``): an upper-case letter
    after the first character. Single capitals (``Deep``) are what a style may re-case."""
    return len(word) > 1 and any(ch.isupper() for ch in word[1:])


def protect_title(title: str) -> str:
    """Brace every word a style would wrongly lower-case, leaving braced groups and commands alone."""
    out, depth, i = [], 0, 0
    while i < len(title):
        ch = title[i]
        if ch == "\\":  # a command (\'e, \emph, ...): copy it with its name
            m = re.compile(r"\\([A-Za-z]+|.)").match(title, i)
            out.append(m.group(0))
            i = m.end()
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if depth == 0 and ch.isalpha():
            m = _WORD.match(title, i)
            word = m.group(0)
            out.append(f"{{{word}}}" if _needs_protection(word) else word)
            i = m.end()
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def normalise(text: str) -> dict[str, str]:
    """``{key: formatted entry}`` of a BibTeX text, titles protected."""
    out = {}
    for entry in parse(text):
        if "title" in entry.fields:
            entry.fields["title"] = protect_title(entry.fields["title"])
        out[entry.key] = entry.format()
    return out


# -- one .bib per sweep ---------------------------------------------------------------------------------
def sweep_bib_path(out: str | os.PathLike[str], sweep: str) -> Path:
    """The sweep's bibliography, next to the exported table: ``<dir of out>/<sweep>.bib``."""
    return Path(out).parent / f"{sweep}.bib"


def merge_into(path: str | os.PathLike[str], entries: Mapping[str, str] | Iterable[str]) -> list[str]:
    """Add (or refresh) ``entries`` in the ``.bib`` at ``path``; entries already there under other keys
    stay as they are. Returns the keys written. Atomic (a reader never sees half a file)."""
    path = Path(path)
    texts = entries.values() if isinstance(entries, Mapping) else entries
    ours: dict[str, str] = {}
    for text in texts:
        ours.update(normalise(text))
    existing: dict[str, str] = {}
    if path.exists():
        for entry in parse(path.read_text(encoding="utf-8")):
            existing[entry.key] = entry.format()
    merged = {**existing, **ours}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text("\n\n".join(merged[k] for k in sorted(merged)) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return sorted(ours)
