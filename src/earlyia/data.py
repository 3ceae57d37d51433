"""Where the shared (not redistributed) data lives, and the one helper tests use to find it.

``EARLYIA_DATA`` points at the shared data directory. Without it: ``../shared/data`` from the
repository root when earlyia runs from a source checkout, else from the current working directory
(an installed package has no repository). ``EARLYIA_STRICT_DATA=1`` (set by ``.ci/run``) turns "data
absent, skip" into a hard failure.
"""

from __future__ import annotations

import os
from pathlib import Path

from earlyia.errors import DataNotFoundError

_REPO_ROOT = Path(__file__).resolve().parents[2]


def _base() -> Path:
    """The repository root of a source checkout, else the current working directory."""
    return _REPO_ROOT if (_REPO_ROOT / "pyproject.toml").is_file() else Path.cwd()


def data_dir() -> Path:
    """The shared data directory (``$EARLYIA_DATA``, else ``../shared/data`` from the checkout or
    the cwd)."""
    env = os.environ.get("EARLYIA_DATA")
    if env:
        return Path(env).expanduser().resolve()
    return (_base().parent / "shared" / "data").resolve()


def reference_dir() -> Path:
    """The shared reference directory (``$EARLYIA_REFERENCE`` or sibling ``reference`` of the
    data)."""
    env = os.environ.get("EARLYIA_REFERENCE")
    if env:
        return Path(env).expanduser().resolve()
    return data_dir().parent / "reference"


def strict() -> bool:
    """True when absent data must fail instead of skip (CI)."""
    return os.environ.get("EARLYIA_STRICT_DATA", "") not in ("", "0", "false", "no")


def shared_path(relative: str, *, reference: bool = False) -> Path:
    """Path of a file under the shared data (or reference) directory; raises when absent."""
    base = reference_dir() if reference else data_dir()
    path = base / relative
    if not path.exists():
        raise DataNotFoundError(
            f"{path}: shared data file not found; set EARLYIA_DATA (or EARLYIA_REFERENCE) "
            "to the directory that holds it"
        )
    return path
