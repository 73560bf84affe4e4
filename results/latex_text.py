"""Any label → LaTeX that compiles with ``\\usepackage{booktabs,graphicx}`` alone (and back to plain text).

Why a module of its own: every table kind typesets labels that users write (spec labels such as
``w/o λ``, method display names, task and metric names), and pdflatex stops at the first character it has
no definition for (``Unicode character λ (U+03BB) not set up for use with LaTeX``). So a label is either
typeset completely or rejected with one line naming it, never half-written into a ``.tex`` that fails later.

The rules (documented in README "Labels in LaTeX"):

* LaTeX specials ``& % _ $ # { } ~ ^ \\`` are escaped;
* Greek letters and common symbols become math (``λ`` → ``$\\lambda$``, ``≤`` → ``$\\leq$``, ``ΔT2`` →
  ``$\\Delta_{T_{2}}$``), accented Latin letters become accent commands (``é`` → ``\\'{e}``), typographic
  punctuation becomes its LaTeX ligature (``–`` → ``--``);
* **explicit LaTeX**: as in matplotlib's mathtext, a label with an even number of unescaped ``$`` carries
  math between them verbatim (``w/o $\\lambda_{s}$`` → ``w/o $\\lambda_{s}$``); ``\\$`` is a literal dollar.
  Plots render the same label with mathtext, so one label serves tables and figures;
* any other non-ASCII character is a :class:`LatexLabelError` naming the label and the character.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["LatexLabelError", "latex_text", "plain_text", "split_math"]


class LatexLabelError(ValueError):
    """A label holds a character with no LaTeX mapping (one line: the label, the character, the fix)."""


#: Math-mode commands (used bare inside ``$...$``, wrapped in ``$...$`` in text).
MATH_SYMBOLS: dict[str, str] = {
    # Greek, lower case (ε/φ follow Unicode's glyphs: U+03B5 is the open epsilon, U+03C6 the loopy phi)
    "α": r"\alpha", "β": r"\beta", "γ": r"\gamma", "δ": r"\delta", "ε": r"\varepsilon", "ϵ": r"\epsilon",
    "ζ": r"\zeta", "η": r"\eta", "θ": r"\theta", "ϑ": r"\vartheta", "ι": r"\iota", "κ": r"\kappa",
    "λ": r"\lambda", "μ": r"\mu", "µ": r"\mu", "ν": r"\nu", "ξ": r"\xi", "π": r"\pi", "ϖ": r"\varpi",
    "ρ": r"\rho", "ϱ": r"\varrho", "σ": r"\sigma", "ς": r"\varsigma", "τ": r"\tau", "υ": r"\upsilon",
    "φ": r"\varphi", "ϕ": r"\phi", "χ": r"\chi", "ψ": r"\psi", "ω": r"\omega", "ο": "o",
    # Greek, upper case (those without a Latin twin)
    "Γ": r"\Gamma", "Δ": r"\Delta", "Θ": r"\Theta", "Λ": r"\Lambda", "Ξ": r"\Xi", "Π": r"\Pi",
    "Σ": r"\Sigma", "Υ": r"\Upsilon", "Φ": r"\Phi", "Ψ": r"\Psi", "Ω": r"\Omega",
    # arrows, operators, relations
    "↑": r"\uparrow", "↓": r"\downarrow", "→": r"\rightarrow", "←": r"\leftarrow", "↔": r"\leftrightarrow",
    "⇒": r"\Rightarrow", "⇐": r"\Leftarrow", "⇔": r"\Leftrightarrow", "±": r"\pm", "∓": r"\mp",
    "×": r"\times", "÷": r"\div", "·": r"\cdot", "⋅": r"\cdot", "∗": r"\ast", "•": r"\bullet",
    "≤": r"\leq", "≥": r"\geq", "≠": r"\neq", "≈": r"\approx", "∼": r"\sim", "≡": r"\equiv",
    "≪": r"\ll", "≫": r"\gg", "∝": r"\propto", "∞": r"\infty", "√": r"\surd", "∑": r"\sum",
    "∏": r"\prod", "∂": r"\partial", "∇": r"\nabla", "∈": r"\in", "∉": r"\notin", "⊂": r"\subset",
    "⊆": r"\subseteq", "∪": r"\cup", "∩": r"\cap", "∅": r"\emptyset", "∀": r"\forall", "∃": r"\exists",
    "∧": r"\wedge", "∨": r"\vee", "¬": r"\neg", "ℓ": r"\ell", "′": r"\prime", "−": "-",
    "°": r"^\circ", "¹": "^1", "²": "^2", "³": "^3", "⁰": "^0", "⁴": "^4", "⁵": "^5", "⁶": "^6", "⁷": "^7",
    "⁸": "^8", "⁹": "^9", "₀": "_0", "₁": "_1", "₂": "_2", "₃": "_3", "₄": "_4", "₅": "_5", "₆": "_6",
    "₇": "_7", "₈": "_8", "₉": "_9",
}
#: Greek capitals that look like Latin letters are typeset as those letters (what LaTeX itself does).
for _greek, _latin in zip("ΑΒΕΖΗΙΚΜΝΟΡΤΧ", "ABEZHIKMNOPTX", strict=True):
    MATH_SYMBOLS[_greek] = _latin

#: Text-mode replacements (kernel commands of LaTeX with the default OT1 encoding).
TEXT_SYMBOLS: dict[str, str] = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
    "}": r"\}", "~": r"\textasciitilde{}", "^": r"\^{}", "<": r"\textless{}", ">": r"\textgreater{}",
    "|": r"\textbar{}", "–": "--", "—": "---", "…": r"\ldots{}", "‘": "`", "’": "'", "“": "``", "”": "''",
    "\u00a0": "~", "§": r"\S{}", "¶": r"\P{}", "©": r"\copyright{}", "®": r"\textregistered{}",
    "™": r"\texttrademark{}", "£": r"\pounds{}", "ß": r"\ss{}", "æ": r"\ae{}", "Æ": r"\AE{}", "ø": r"\o{}",
    "Ø": r"\O{}", "œ": r"\oe{}", "Œ": r"\OE{}", "å": r"\aa{}", "Å": r"\AA{}", "ł": r"\l{}", "Ł": r"\L{}",
    "ı": r"\i{}", "¿": "?`", "¡": "!`",
}
#: Combining accents (after NFD decomposition) → LaTeX accent commands defined for every font encoding.
_ACCENTS: dict[str, str] = {
    "\u0301": "'", "\u0300": "`", "\u0302": "^", "\u0303": "~", "\u0308": '"', "\u030a": "r", "\u0327": "c",
    "\u030c": "v", "\u0304": "=", "\u0307": ".", "\u030b": "H", "\u0306": "u",
}
_DELTA_T = re.compile(r"ΔT(\d*)")
_UNESCAPED_DOLLAR = re.compile(r"(?<!\\)\$")


def split_math(text: str) -> list[tuple[bool, str]]:
    """``[(is_math, piece), ...]``: matplotlib's rule — an even, non-zero number of unescaped ``$`` marks math
    between each pair; otherwise there is no math and every ``$`` is a literal dollar."""
    dollars = [m.start() for m in _UNESCAPED_DOLLAR.finditer(text)]
    if not dollars or len(dollars) % 2:
        return [(False, text)]
    pieces: list[tuple[bool, str]] = []
    pos = 0
    for start, end in zip(dollars[::2], dollars[1::2], strict=True):
        if start > pos:
            pieces.append((False, text[pos:start]))
        pieces.append((True, text[start + 1:end]))
        pos = end + 1
    if pos < len(text):
        pieces.append((False, text[pos:]))
    return pieces


def latex_text(text: object, *, what: str = "label") -> str:
    """Typeset ``text`` for LaTeX (see the module docstring); ``what`` names it in the error message."""
    s = str(text)
    out: list[str] = []
    for is_math, piece in split_math(s):
        if is_math:
            out.append(_math(piece, s, what))
        else:
            out.append(_text(piece, s, what))
    return _merge_math("".join(out))


def _text(piece: str, label: str, what: str) -> str:
    parts: list[str] = []
    i = 0
    while i < len(piece):
        m = _DELTA_T.match(piece, i)
        if m:  # ΔT / ΔT<i>: the paper's Δ_T / Δ_{T_i}
            parts.append(rf"$\Delta_{{T_{{{m.group(1)}}}}}$" if m.group(1) else r"$\Delta_T$")
            i = m.end()
            continue
        ch = piece[i]
        if ch == "\\" and piece.startswith("\\$", i):  # an escaped dollar is a literal dollar
            parts.append(r"\$")
            i += 2
            continue
        parts.append(_text_char(ch, label, what))
        i += 1
    return "".join(parts)


def _text_char(ch: str, label: str, what: str) -> str:
    if ch in TEXT_SYMBOLS:
        return TEXT_SYMBOLS[ch]
    if ch in MATH_SYMBOLS:
        cmd = MATH_SYMBOLS[ch]
        return cmd if cmd.isalpha() else f"${cmd}$"  # Greek capitals with a Latin twin stay upright text
    if " " <= ch <= "~":
        return ch
    if ch in "\t\n\r":
        return " "
    decomposed = unicodedata.normalize("NFD", ch)
    base, marks = decomposed[:1], decomposed[1:]
    if " " <= base <= "~" and base.isalpha() and marks and all(m in _ACCENTS for m in marks):
        tex = r"\i" if base == "i" else base
        for mark in marks:
            tex = f"\\{_ACCENTS[mark]}{{{tex}}}"
        return tex
    raise _unmappable(ch, label, what)


def _math(piece: str, label: str, what: str) -> str:
    """A ``$...$`` piece: verbatim, with unicode symbols as their math commands; braces must balance."""
    depth = 0
    for i, ch in enumerate(piece):
        if ch == "{" and (i == 0 or piece[i - 1] != "\\"):
            depth += 1
        elif ch == "}" and (i == 0 or piece[i - 1] != "\\"):
            depth -= 1
            if depth < 0:
                break
    if depth != 0:
        raise LatexLabelError(f"{what} {label!r}: unbalanced braces in the math ${piece}$")
    parts = []
    for ch in piece:
        if ch in MATH_SYMBOLS:
            cmd = MATH_SYMBOLS[ch]
            parts.append(cmd + " " if cmd[-1].isalpha() and cmd.startswith("\\") else cmd)
        elif " " <= ch <= "~":
            parts.append(ch)
        else:
            raise _unmappable(ch, label, what)
    return "$" + "".join(parts).rstrip() + "$"


def _unmappable(ch: str, label: str, what: str) -> LatexLabelError:
    name = unicodedata.name(ch, "unnamed")
    return LatexLabelError(f"{what} {label!r}: character {ch!r} (U+{ord(ch):04X} {name}) has no LaTeX mapping; "
                           "write it as LaTeX math between $...$ (e.g. 'w/o $\\lambda$')")


def _merge_math(tex: str) -> str:
    """``$a$$b$`` → ``$ab$``: adjacent math runs would otherwise read as TeX's display-math ``$$``
    (a space keeps ``\\lambda`` and a following letter apart)."""
    return _ADJACENT_MATH.sub(lambda m: (m.group(1) or "") + (" " if m.group(1) and m.group(2) else ""), tex)


_ADJACENT_MATH = re.compile(r"(?<!\\)(\\[A-Za-z]+)?\$\$(?=([A-Za-z])?)")


# -- plain text (Markdown, CSV, terminal) ------------------------------------------------------------------
_COMMAND_TO_CHAR: dict[str, str] = {}
for _ch, _cmd in MATH_SYMBOLS.items():
    if _cmd.startswith("\\") and _cmd[1:].isalpha():
        _COMMAND_TO_CHAR.setdefault(_cmd, _ch)
_COMMAND = re.compile(r"\\([A-Za-z]+)\s?")


def plain_text(text: object) -> str:
    """The label for readers without LaTeX: math pieces made of known commands become unicode
    (``w/o $\\lambda$`` → ``w/o λ``); any other math piece keeps its ``$...$``; ``\\$`` becomes ``$``."""
    s = str(text)
    out = []
    for is_math, piece in split_math(s):
        if not is_math:
            out.append(piece.replace("\\$", "$"))
            continue
        converted = _COMMAND.sub(lambda m: _COMMAND_TO_CHAR.get("\\" + m.group(1), m.group(0)), piece)
        simple = "\\" not in converted and "{" not in converted and "^" not in converted and "_" not in converted
        out.append(converted if simple else f"${piece}$")
    return "".join(out)
