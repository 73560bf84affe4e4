"""What every ``adapmtl`` verb prints when it fails, in one place: one line, one prefix, one exit status.

Why here (``results``, not ``orchestrator``): the results verbs also run stand-alone (``python -m
results.cli``) without the orchestrator, and both entry points must print failures the same way, so a user
(or a script grepping stderr) sees ``adapmtl: error: ...`` whichever verb failed and wherever it failed —
argument parsing, validation or a store that cannot be read.
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

PROG = "adapmtl"
ERROR_PREFIX = f"{PROG}: error: "
#: exit status of a bad input (spec, argument, store); 1 is reserved for unexpected failures
EXIT_BAD_INPUT = 2


def one_line(text: object) -> str:
    """The first non-empty line of a message (exceptions can carry tracebacks or multi-line details)."""
    for line in str(text).strip().splitlines():
        if line.strip():
            return line.strip()
    return ""


def error(message: object, *, code: int = EXIT_BAD_INPUT) -> int:
    """Print ``adapmtl: error: <first line of message>`` on stderr; returns the exit status to use."""
    print(f"{ERROR_PREFIX}{one_line(message)}", file=sys.stderr, flush=True)
    return code


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the one error line (``adapmtl: error: table: argument --kind: ...``) instead of a usage
    block and argparse's ``adapmtl table: error:`` prefix; ``--help`` still prints the full usage."""

    def error(self, message: str) -> NoReturn:
        verb = self.prog[len(PROG):].strip()
        where = f"{verb}: " if verb else ""
        hint = f" (see `{self.prog} --help`)"
        error(f"{where}{message}{hint}")
        raise SystemExit(EXIT_BAD_INPUT)
