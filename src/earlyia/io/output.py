"""Inputs and output files checked before any work; outputs written through temporaries that never
outlive the run.

* :func:`check_inputs` refuses an input path that does not exist or cannot be read, before anything
  is read or written (a typo in a batch command line is an error, not a quiet reason row).
* :func:`check_output` refuses an ``--out`` that is a folder, lies in a folder that cannot be
  written, or is one of the inputs (compared after resolving symbolic links, and as the same file on
  disk), before anything is read.
* Temporaries live beside the output and are named ``.<name>.<pid>.<random>.eia-tmp`` (files or
  folders). A run removes its own on any exit that Python sees (errors, Ctrl-C, SIGTERM with
  :func:`earlyia.signals.raising_signals`); :func:`remove_stale_temporaries` removes those a killed
  run (SIGKILL, power loss) left: their pid is no longer running, or they are older than
  :data:`STALE_SECONDS`.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

from earlyia.errors import InputError

TEMP_SUFFIX = ".eia-tmp"
#: A temporary whose process still runs is left alone unless it is older than this (its pid was
#: reused).
STALE_SECONDS = 7 * 24 * 3600
_TEMP_RE = re.compile(r"^\..+\.(\d+)\.[^.]+" + re.escape(TEMP_SUFFIX) + "$")


def temp_prefix(path: Path) -> str:
    """The name prefix of this process's temporaries for ``path`` (``tempfile`` adds the random
    part)."""
    return f".{path.name}.{os.getpid()}."


def make_temp_file(path: Path) -> str:
    """A new empty temporary file beside ``path`` (after removing stale ones of killed runs)."""
    remove_stale_temporaries(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path), suffix=TEMP_SUFFIX, dir=path.parent)
    os.close(fd)
    return tmp


def make_temp_dir(path: Path) -> str:
    """A new temporary folder beside ``path`` (after removing stale ones of killed runs)."""
    remove_stale_temporaries(path.parent)
    return tempfile.mkdtemp(prefix=temp_prefix(path), suffix=TEMP_SUFFIX, dir=path.parent)


def _pid_running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    return True


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Remove the temporaries in ``folder`` left by runs that were killed; returns what was removed.

    Only names of our pattern (``.<name>.<pid>.<random>.eia-tmp``) are touched, and only when their
    pid is not running or they are older than :data:`STALE_SECONDS`.
    """
    folder = Path(folder)
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        m = _TEMP_RE.match(entry.name)
        if not m:
            continue
        pid = int(m.group(1))
        try:
            age = now - entry.stat(follow_symlinks=False).st_mtime
        except OSError:
            continue
        if pid == os.getpid() or (_pid_running(pid) and age < STALE_SECONDS):
            continue
        p = Path(entry.path)
        with contextlib.suppress(OSError):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(p)
            else:
                p.unlink()
            removed.append(p)
    return removed


def check_inputs(inputs: Iterable[str | Path], *, what: str = "input") -> list[Path]:
    """Refuse, before any work, an input path that does not exist or cannot be read
    (:class:`InputError`, one line naming the path). Damaged or unsupported files are not judged
    here: their readers report them."""
    paths = [Path(p) for p in inputs]
    for p in paths:
        if not p.exists():
            kind = "broken symbolic link" if p.is_symlink() else "no such file or folder"
            raise InputError(f"{what} {p} does not exist ({kind}); check the path")
        if not os.access(p, os.R_OK | (os.X_OK if p.is_dir() else 0)):
            raise InputError(
                f"{what} {p} cannot be read (permission denied); check its permissions"
            )
    return paths


def _nearest_existing(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_output(
    out: str | Path,
    inputs: Iterable[str | Path] = (),
    *,
    option: str = "--out",
    directory: bool = False,
) -> Path:
    """Refuse an output path before any work (:class:`InputError`, one line naming ``option`` and
    what to fix).

    ``directory``: the output is a folder (else a file). Checks that a file output is not an
    existing folder (and a folder output not an existing file), that the nearest existing folder
    above it can be written (a real write test, so read-only mounts count), and that it is none of
    ``inputs`` (resolved through symbolic links, and by identity on disk).
    """
    out = Path(out)
    if not str(out):
        raise InputError(f"{option} is empty: give a file name")
    if out.exists() and out.is_dir() and not directory:
        raise InputError(
            f"{option} {out} is a folder: give a file name (e.g. {out / 'out.parquet'})"
        )
    if directory and out.exists() and not out.is_dir():
        raise InputError(f"{option} {out} is a file: give a folder")
    target = out.resolve()
    for given in inputs:
        p = Path(given)
        same = p.resolve() == target
        if not same and out.exists() and p.exists():
            with contextlib.suppress(OSError):
                same = os.path.samefile(p, out)
        if same:
            raise InputError(
                f"{option} {out} is the input {p}: writing it would destroy the input; "
                "choose another path"
            )
    anchor = _nearest_existing(out if directory else out.parent)
    if not anchor.is_dir():
        raise InputError(f"{option} {out}: {anchor} is not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=temp_prefix(out), suffix=TEMP_SUFFIX, dir=anchor)
    except OSError as exc:
        raise InputError(
            f"{option} {out}: cannot write in {anchor} ({exc.strerror or exc}); choose a "
            "writable folder"
        ) from exc
    os.close(fd)
    os.unlink(probe)
    return out
