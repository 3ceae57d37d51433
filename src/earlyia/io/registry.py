"""Format registry: cheap detection separated from reading.

A format is ``(name, detect, read)``: ``detect(path) -> bool`` only sniffs (magic bytes, a Parquet
footer's schema, a CSV header line, the first members of a tar archive) and never parses the data;
``read(path) -> LightCurves`` does the work. :func:`detect_format` asks the detectors in
registration order (the more specific first), so adding a format is one :func:`register_reader` call
and never touches the readers.
"""

from __future__ import annotations

import bz2
import functools
import gzip
import lzma
import tarfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from earlyia.errors import ConfigError, EarlyIAError, FormatError
from earlyia.io.table import LightCurves
from earlyia.registry import Registry

#: What a reader raises on a damaged, truncated or mistyped file: decompression, decoding, Arrow and
#: the errors pandas/numpy raise on values of the wrong type. :func:`guarded` turns them into one
#: :class:`FormatError`.
DAMAGED_INPUT_ERRORS = (
    OSError,
    EOFError,
    zlib.error,
    lzma.LZMAError,
    tarfile.TarError,
    UnicodeDecodeError,
    pa.ArrowException,
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    OverflowError,
)

PARQUET_MAGIC = b"PAR1"
AVRO_MAGIC = b"Obj\x01"


@dataclass(frozen=True)
class Reader:
    name: str
    detect: Callable[[Path], bool]
    read: Callable[[Path], LightCurves]
    description: str = ""
    #: "unit": a directory is always one input (SNANA folders); "whole": ``read(directory)`` reads
    #: it in one pass, but batch tools (``expand_inputs``) still list its files so they can chunk
    #: and report per file; "": files only.
    directory: str = ""


def _check_reader(name: str, reader: Reader) -> None:
    if not isinstance(reader, Reader) or reader.name != name:
        raise ConfigError(f"format {name!r}: expected a Reader named {name!r}, got {reader!r}")


#: The formats by name, in detection order.
READERS: Registry[Reader] = Registry("format", check=_check_reader)


def register_reader(
    name: str,
    detect: Callable[[Path], bool],
    read: Callable[[Path], LightCurves],
    *,
    description: str = "",
    directory: str = "",
    replace: bool = False,
) -> Reader:
    """Add a format (``replace=True`` to replace one). Detectors run in registration order; register
    specific formats first.

    ``directory``: "" (the reader takes files), "unit" (a folder is one input) or "whole" (the
    reader can take a folder in one pass, used by :func:`earlyia.io.read` when given that folder
    alone).
    """
    if directory not in ("", "unit", "whole"):
        raise ConfigError(
            f"register_reader({name!r}): directory must be '', 'unit' or 'whole', got {directory!r}"
        )
    if name in READERS and not replace:
        old = READERS.get(name)
        same = (
            old.detect,
            getattr(old.read, "__wrapped__", old.read),
            old.description,
            old.directory,
        )
        if same == (detect, read, description, directory):
            return old  # the same format registered again (a re-imported module)
    return READERS.register(
        name, Reader(name, detect, guarded(read, name), description, directory), replace=replace
    )


def guarded(read: Callable[[Path], LightCurves], name: str) -> Callable[[Path], LightCurves]:
    """``read`` whose failures on a damaged input (:data:`DAMAGED_INPUT_ERRORS`) become a
    :class:`FormatError`.

    The reader boundary: a gzip stream corrupted after a few kB, a truncated archive or a column of
    the wrong type ends as one line naming the file and the format, so batch tools report it and
    read the other inputs. Errors of the earlyia hierarchy pass through unchanged.
    """
    if getattr(read, "_earlyia_guarded", False):
        return read

    @functools.wraps(read)
    def read_guarded(path, *args, **kwargs):
        try:
            return read(path, *args, **kwargs)
        except EarlyIAError:
            raise
        except DAMAGED_INPUT_ERRORS as exc:
            detail = str(exc).splitlines()[0][:300] if str(exc) else ""
            raise FormatError(
                f"cannot read as {name}: "
                f"{type(exc).__name__}{': ' + detail if detail else ''} (is the file "
                "complete and of this format?)",
                source=str(path),
            ) from exc

    read_guarded._earlyia_guarded = True
    return read_guarded


def readers() -> dict[str, Reader]:
    """The registered formats by name, in detection order."""
    return dict(READERS.items())


def get_reader(name: str) -> Reader:
    """The format registered as ``name`` (:class:`ConfigError` naming the known formats when
    there is none)."""
    return READERS.get(name)


def detect_format(path: str | Path) -> str:
    """The name of the first registered format whose detector accepts ``path``.

    Raises :class:`FormatError` naming the file when none does (or the file does not exist).
    """
    path = Path(path)
    if not path.exists():
        raise FormatError("no such file or directory", source=str(path))
    for _, reader in READERS.items():
        try:
            if reader.detect(path):
                return reader.name
        except (OSError, ValueError, EOFError, pa.ArrowException, tarfile.TarError, lzma.LZMAError):
            continue
    if path.is_file() and is_parquet(
        path
    ):  # Parquet by its first bytes, but no footer: truncated or damaged
        try:
            pq.read_schema(path)
        except (OSError, pa.ArrowException) as exc:
            raise FormatError(
                f"cannot read Parquet ({exc}); is the file complete?", source=str(path)
            ) from exc
    raise FormatError(
        f"unrecognised format (known: {', '.join(READERS.names())}); pass format=NAME (CLI: "
        "--format NAME) if it is one of these",
        source=str(path),
    )


# ----------------------------------------------------------------------------------------------
# sniffing helpers
def head_bytes(path: Path, n: int = 8) -> bytes:
    """The first ``n`` bytes of a file (b'' for a directory)."""
    if not path.is_file():
        return b""
    with open(path, "rb") as fh:
        return fh.read(n)


def is_parquet(path: Path) -> bool:
    return head_bytes(path, 4) == PARQUET_MAGIC


def is_avro(path: Path) -> bool:
    return head_bytes(path, 4) == AVRO_MAGIC


def parquet_schema(path: Path) -> pa.Schema | None:
    """The schema from a Parquet footer (None when ``path`` is not a readable Parquet file)."""
    if not is_parquet(path):
        return None
    try:
        return pq.read_schema(path)
    except (OSError, pa.ArrowException):
        return None


def is_tar(path: Path) -> bool:
    """A tar archive, plain or gzip / xz / bz2 compressed, by content (the ``ustar`` magic of the
    first member); the name (``.tar``, ``.tgz``...) is only a hint and never required."""
    path = Path(path)
    if not path.is_file():
        return False
    magic = head_bytes(path, 6)
    opener = open
    if magic[:2] == b"\x1f\x8b":
        opener = gzip.open
    elif magic[:6] == b"\xfd7zXZ\x00":
        opener = lzma.open
    elif magic[:3] == b"BZh":
        opener = bz2.open
    try:
        with opener(path, "rb") as fh:
            block = fh.read(512)
    except (OSError, EOFError, lzma.LZMAError):
        return False
    return len(block) == 512 and block[257:262] == b"ustar"


def open_text(path: Path):
    """Open a possibly compressed (gzip / xz / bz2, by magic bytes) text file."""
    magic = head_bytes(path, 6)
    if magic[:2] == b"\x1f\x8b":
        return gzip.open(path, "rt", errors="replace")
    if magic[:6] == b"\xfd7zXZ\x00":
        return lzma.open(path, "rt", errors="replace")
    if magic[:3] == b"BZh":
        return bz2.open(path, "rt", errors="replace")
    return open(path, errors="replace")


def text_head(path: Path, n_lines: int = 1) -> list[str]:
    """The first lines of a (possibly compressed) text file; [] for binary or unreadable files."""
    if not path.is_file():
        return []
    magic = head_bytes(path, 4)
    if magic in (PARQUET_MAGIC, AVRO_MAGIC):
        return []
    try:
        with open_text(path) as fh:
            return [fh.readline() for _ in range(n_lines)]
    except (OSError, EOFError, lzma.LZMAError, UnicodeDecodeError):
        return []


def csv_header(path: Path) -> list[str]:
    """Column names of a (possibly compressed) CSV file's first line (stripped); [] when not
    text."""
    lines = text_head(path, 1)
    if not lines or "," not in lines[0]:
        return []
    return [c.strip().strip('"') for c in lines[0].strip().split(",")]
