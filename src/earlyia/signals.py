"""Termination signals as exceptions, so a killed run cleans up like an interrupted one.

By default SIGTERM (``kill``, a batch scheduler, ``systemctl stop``) ends Python at once:
``finally`` blocks and ``except BaseException`` cleanups do not run, and temporary files stay beside
the output. :func:`raising_signals` turns SIGTERM and SIGHUP into :class:`Terminated` (a
``KeyboardInterrupt``, as Ctrl-C gives), raised where the program is, so the normal cleanup path
removes the temporaries. Compiled loops cannot be interrupted mid-call: the feature kernels run on
bounded batches (see :func:`earlyia.features.base.extract_batched`) so a signal is acted on within
about a second.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


class Terminated(KeyboardInterrupt):
    """The process received a termination signal (``signum``)."""

    def __init__(self, signum: int):
        super().__init__(f"terminated by {signal.Signals(signum).name}")
        self.signum = signum


@contextlib.contextmanager
def raising_signals(signums: tuple[int, ...] = (signal.SIGTERM, signal.SIGHUP)) -> Iterator[None]:
    """Within the block, ``signums`` raise :class:`Terminated` once (later ones while cleaning up
    are ignored); the previous handlers come back on exit. Outside the main thread it does
    nothing (Python's rule)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired = []

    def handler(signum, _frame):
        if fired:
            return  # already unwinding: let the cleanup finish
        fired.append(signum)
        raise Terminated(signum)

    previous = {s: signal.signal(s, handler) for s in signums}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
