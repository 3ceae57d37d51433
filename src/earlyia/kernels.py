"""The compiled kernels' first-run cost, said once per installation.

earlyia's numerical kernels are compiled by Numba on first use and cached (``cache=True``: in the
package's ``__pycache__``, or Numba's user cache directory when the package folder is read-only), so
only the first run of an installation pays for the compilation. That run says so before it starts
and how long it took when it ends; a marker in earlyia's cache directory (``$EARLYIA_CACHE_DIR``,
else ``$XDG_CACHE_HOME/earlyia``, else ``~/.cache/earlyia``) keyed by the versions that decide the
compiled code keeps later runs quiet.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path
from typing import TextIO

from earlyia import __version__


def cache_dir() -> Path:
    """earlyia's cache directory."""
    env = os.environ.get("EARLYIA_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "earlyia"


def marker() -> Path:
    """The file that says this installation's kernels were compiled (earlyia, Numba, Python,
    machine)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        numba_version = version("numba")
    except PackageNotFoundError:
        numba_version = "none"
    python = f"py{sys.version_info[0]}.{sys.version_info[1]}"
    key = f"{__version__}-numba{numba_version}-{python}-{platform.machine()}"
    return cache_dir() / f"kernels-{key}.done"


class FirstCompile:
    """Context manager around a command that runs kernels: a note before the first run, its cost
    after."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream

    def __enter__(self) -> FirstCompile:
        self._out = self.stream if self.stream is not None else sys.stderr
        self._path = marker()
        self.first = not self._path.exists()
        if self.first:
            print(
                "earlyia: first run of this installation: the numerical kernels are compiled "
                "once and cached "
                "(tens of seconds); later runs start at once",
                file=self._out,
                flush=True,
            )
        self._t0 = time.monotonic()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self.first or exc_type is not None:
            return
        seconds = time.monotonic() - self._t0
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            self._path.write_text(f"first run {seconds:.0f} s\n")
        except OSError:
            return  # a read-only home: the note shows again next time, nothing else changes
        print(
            f"earlyia: first run took {seconds:.0f} s including the compilation; kernels cached",
            file=self._out,
            flush=True,
        )
