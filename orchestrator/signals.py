"""SIGTERM ends a driver the way Ctrl-C does: runs marked KILLED, resumable, one line, exit code 143.

``ray.init`` installs its own SIGTERM handlers (the driver's ``sys.exit(signum)``, then the head node's
"kill every Ray process, then ``sys.exit(1)``"); the second tears the cluster down under a driver whose
core worker is still connected, which ended in a C++ abort (exit 134) with a stack dump. The sweep
therefore installs this handler after Ray has started: it raises :class:`Terminated`, a
``KeyboardInterrupt``, in the main thread, so SIGTERM takes the same path as Ctrl-C (parent and children
marked KILLED, Ray shut down in order) and the CLI exits 143 (128 + SIGTERM).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

EXIT_SIGTERM = 128 + signal.SIGTERM
EXIT_SIGINT = 128 + signal.SIGINT


class Terminated(KeyboardInterrupt):
    """The driver received SIGTERM."""


#: Set once SIGTERM arrived. Ray's blocking calls (``ray.get`` inside Tune) catch a ``KeyboardInterrupt``
#: raised by a signal handler and re-raise a plain ``KeyboardInterrupt``, so the exception's type alone
#: cannot tell SIGTERM from Ctrl-C.
_received = {"sigterm": False}


def _raise_terminated(signum: int, frame: object) -> None:
    _received["sigterm"] = True
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the bookkeeping short
    raise Terminated("terminated (SIGTERM)")


def is_sigterm(exc: BaseException) -> bool:
    """Whether ``exc`` (a KeyboardInterrupt) stands for a SIGTERM rather than a Ctrl-C."""
    return isinstance(exc, Terminated) or (isinstance(exc, KeyboardInterrupt) and _received["sigterm"])


def install() -> None:
    """SIGTERM → :class:`Terminated` in the main thread (a no-op elsewhere: only it may set handlers)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_terminated)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """:func:`install` for the duration of the block, then the previous handler again."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    install()
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
