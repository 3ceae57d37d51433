"""Progress of long steps: a bar on a terminal, plain lines when the output is piped or logged.

A run that goes to a log file (cron, nohup, a pipe) still says how far it is: one line when it
starts, then at most every ``every`` seconds and at the end, with the count, the rate and the time
left.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Count ``total`` units of work, shown on ``stream`` (stderr by default).

    ``mode``: ``"auto"`` (a bar on a terminal, lines otherwise), ``"bar"``, ``"lines"`` or
    ``"off"``. Use as a context manager; call :meth:`update` as units finish.
    """

    def __init__(
        self,
        total: int,
        desc: str,
        *,
        unit: str = "it",
        mode: str = "auto",
        every: float = 10.0,
        initial: int = 0,
        stream: TextIO | None = None,
    ):
        self.total = int(total)
        self.desc = desc
        self.unit = unit
        self.mode = mode
        self.every = float(every)
        self.initial = int(initial)
        self.stream = stream

    def __enter__(self) -> Progress:
        out = self.stream if self.stream is not None else sys.stderr
        mode = self.mode
        if mode == "auto":
            mode = "bar" if out.isatty() else "lines"
        self._out, self._mode = out, mode
        self.n = self.initial
        self._t0 = self._last = time.monotonic()
        self._bar = None
        if mode == "bar":
            from tqdm import tqdm

            self._bar = tqdm(
                total=self.total, initial=self.initial, desc=self.desc, unit=self.unit, file=out
            )
        elif mode == "lines":
            self._line(f"{self.desc}: {self.total - self.n} of {self.total} {self.unit} to do")
        return self

    def _line(self, text: str | None = None) -> None:
        """Print ``text``, or the count, the elapsed time and the time left."""
        if text is None:
            elapsed = time.monotonic() - self._t0
            done = self.n - self.initial
            rate = done / elapsed if elapsed > 0 else 0.0
            left = (self.total - self.n) / rate if rate > 0 else float("nan")
            eta = f", about {left:.0f} s left" if left == left and self.n < self.total else ""
            text = f"{self.desc}: {self.n}/{self.total} {self.unit} ({elapsed:.0f} s{eta})"
        print(text, file=self._out, flush=True)

    def update(self, k: int = 1) -> None:
        self.n += k
        if self._bar is not None:
            self._bar.update(k)
        elif self._mode == "lines":
            now = time.monotonic()
            if now - self._last >= self.every or self.n >= self.total:
                self._last = now
                self._line()

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.close()
