"""Reading a model file without trusting it: bounded zip members, checked ``.npy`` headers, a
checked card.

A model file is data from anywhere (a colleague, a registry, a download), so reading it must not be
able to exhaust the memory of the machine, however the file lies about itself:

* the end-of-archive record is read first: a model zip (and each ``.npz`` inside it) lists a handful
  of members in a central directory of a few hundred bytes; a larger directory is refused before it
  is parsed;
* every member's declared (uncompressed) size is checked before it is read, against a byte budget
  that counts every byte decompressed while reading the file (the members, then the arrays inside
  the ``.npz`` members): by default :data:`EXPANSION` times the file's size, at least
  :data:`MIN_BUDGET` and at most :data:`DEFAULT_MAX_BYTES` (:func:`budget_for`), or exactly
  ``max_bytes`` / :data:`MAX_BYTES_ENV` when given; and against what its compressed bytes can
  produce (deflate expands at most 1032 times; only stored and deflated members, unencrypted, are
  read);
* members are read in chunks into a buffer of their declared size, and reading stops there: a header
  that lies cannot make more come out;
* each ``.npy`` header (dtype, shape) is read before its array exists: plain numeric, boolean or
  string dtypes only (no objects, hence no pickle), and the shape must account for exactly the bytes
  the member holds; the array is then a view of the bytes already read (no copy), so the memory a
  load uses stays about the budget;
* ``card.json`` is at most 64 MiB (about a million training alerts; a sixteenth of a larger budget),
  UTF-8 JSON without NaN or infinities, an object nested at most :data:`MAX_JSON_DEPTH` deep, whose
  entries have the types the code reads (:func:`check_card`).

Every refusal is an :class:`~earlyia.errors.IntegrityError` or :class:`~earlyia.errors.ModelError`
naming the file and the member.
"""

from __future__ import annotations

import inspect
import io
import json
import math
import os
import struct
import zipfile
import zlib
from collections.abc import Mapping
from typing import Any, BinaryIO

import numpy as np

from earlyia import select
from earlyia.errors import ConfigError, EarlyIAError, IntegrityError, ModelError
from earlyia.features.gates import GATE_KINDS
from earlyia.labels import TypeMap
from earlyia.model.operating import OperatingCurve
from earlyia.select import SELECTION_RULES

#: Default cap on the bytes decompressed while reading one model file (1 GiB). A 1000-tree forest
#: trained on 20 000 rows holds 75 MB of tree arrays (150 MB counted: the ``trees.npz`` member, then
#: its arrays).
DEFAULT_MAX_BYTES = 1 << 30
#: Environment variable setting the budget (bytes) instead of the default, for an exceptional model
#: one trusts.
MAX_BYTES_ENV = "EARLYIA_MODEL_MAX_BYTES"
#: By default a file may expand into at most this many times its own size (bytes counted as by
#: :class:`Budget`: the trees twice, as the ``trees.npz`` member and as its arrays). Real model
#: files expand about 8 times.
EXPANSION = 200
#: ... but always into at least this many bytes (64 MiB), whatever its size.
MIN_BUDGET = 64 << 20
#: ``card.json`` may use at most this fraction of a budget above the default (:func:`card_limit`).
CARD_SHARE = 16
#: Deepest nesting of lists and objects in a card (real cards: about 5).
MAX_JSON_DEPTH = 64
#: Most bytes deflate can expand one compressed byte into (its longest match, 258 bytes, in 2 bits),
#: with slack for block headers.
DEFLATE_MAX_RATIO = 1032
_DEFLATE_SLACK = 1024
#: Largest central directory read (a model zip's is about 200 bytes, an npz's about 600).
MAX_DIRECTORY = 64 << 10
#: Most members in a model zip or in one of its ``.npz`` members.
MAX_MEMBERS = 32
#: Longest member name (model members are named ``card.json``, ``trees.npz``, ``value.npy`` ...).
MAX_NAME = 255
#: dtype kinds an array of a model file may have: bool, integers, floats, bytes and unicode strings.
ARRAY_KINDS = "biufSU"
_CHUNK = 4 << 20
_EOCD = struct.Struct("<4s4H2LH")  # end of central directory record (22 bytes)
_EOCD64_LOCATOR = struct.Struct("<4sLQL")  # 20 bytes
_EOCD64 = struct.Struct("<4sQ2H2L4Q")  # 56 bytes


def max_model_bytes(value: int | None = None) -> int:
    """The byte budget of one model file: ``value``, else :data:`MAX_BYTES_ENV`, else
    :data:`DEFAULT_MAX_BYTES`."""
    source = "max_bytes"
    if value is None:
        raw = os.environ.get(MAX_BYTES_ENV, "").strip()
        if not raw:
            return DEFAULT_MAX_BYTES
        source = MAX_BYTES_ENV
        try:
            value = int(raw)
        except ValueError as exc:
            raise ConfigError(
                f"{MAX_BYTES_ENV} must be a number of bytes (e.g. 4294967296 for 4 GiB), got "
                f"{raw!r}"
            ) from exc
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{source} must be a positive number of bytes, got {value!r}")
    return value


def budget_for(file_size: int, max_bytes: int | None = None) -> tuple[int, str]:
    """``(limit, why)``: the bytes a file of ``file_size`` bytes may expand into, and the rule that
    set it.

    ``max_bytes`` (or :data:`MAX_BYTES_ENV`) sets it outright; by default it is :data:`EXPANSION`
    times the file size, at least :data:`MIN_BUDGET` and at most :data:`DEFAULT_MAX_BYTES`: a zip
    bomb of a few kB may make the reader allocate 64 MiB, never gigabytes.
    """
    explicit = max_bytes is not None or os.environ.get(MAX_BYTES_ENV, "").strip()
    if explicit:
        return max_model_bytes(max_bytes), "limit"
    limit = min(DEFAULT_MAX_BYTES, max(MIN_BUDGET, EXPANSION * int(file_size)))
    if limit == DEFAULT_MAX_BYTES:
        return limit, "limit"
    return (
        limit,
        f"limit ({EXPANSION} times the file's {int(file_size):,} bytes, at least {MIN_BUDGET:,})",
    )


def card_limit(max_bytes: int) -> int:
    """Largest ``card.json``: 64 MiB, or a sixteenth of a limit above the default (a card of a
    million training alerts is about 56 MB; parsing JSON takes several times its size in memory)."""
    return max(DEFAULT_MAX_BYTES, max_bytes) // CARD_SHARE


def _override_hint() -> str:
    return f"set {MAX_BYTES_ENV} (bytes) or pass max_bytes to load a larger model you trust"


class Budget:
    """Bytes that may still be decompressed while reading one model file."""

    def __init__(self, limit: int, why: str = "limit"):
        self.limit = int(limit)
        self.why = why
        self.used = 0

    def take(self, n: int, what: str) -> None:
        """Count ``n`` more bytes of ``what`` (e.g. "path: member trees.npz"), or refuse them."""
        if n > self.limit - self.used:
            raise IntegrityError(
                f"{what} declares {n:,} bytes, beyond the {self.limit:,}-byte {self.why} on "
                "what a model file may "
                f"expand into ({self.used:,} already read); refusing to load it "
                f"({_override_hint()})"
            )
        self.used += n


# ---------------------------------------------------------------------------- zip archives
def _directory(fp: BinaryIO, size: int, where: str) -> tuple[int, int]:
    """``(entries, directory bytes)`` of the end record zipfile will use, read before zipfile parses
    anything.

    A model file is written without an archive comment, so its last 22 bytes are the end record
    (zipfile takes exactly these); a ZIP64 end record just before them (files beyond 2 GiB)
    overrides their counts.
    """
    if size < _EOCD.size:
        raise IntegrityError(f"{where}: too short for a zip archive ({size} bytes)")
    fp.seek(size - _EOCD.size)
    sig, _disk, _start, _n_disk, entries, cd_size, _cd_offset, comment = _EOCD.unpack(
        fp.read(_EOCD.size)
    )
    if sig != b"PK\x05\x06" or comment != 0:
        raise IntegrityError(
            f"{where}: the archive does not end with a plain zip end record (an archive comment or "
            "trailing bytes): not written by earlyia"
        )
    if size >= _EOCD.size + _EOCD64_LOCATOR.size + _EOCD64.size:
        fp.seek(size - _EOCD.size - _EOCD64_LOCATOR.size)
        if fp.read(4) == b"PK\x06\x07":
            fp.seek(size - _EOCD.size - _EOCD64_LOCATOR.size - _EOCD64.size)
            rec = _EOCD64.unpack(fp.read(_EOCD64.size))
            if rec[0] == b"PK\x06\x06":
                entries, cd_size = rec[7], rec[8]
    return entries, cd_size


class _View(io.RawIOBase):
    """A read-only seekable file over a buffer, without copying it (``io.BytesIO`` copies a
    bytearray)."""

    def __init__(self, buf: bytes | bytearray):
        super().__init__()
        self._buf = memoryview(buf).cast("B")
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: len(self._buf)}[whence]
        if base + pos < 0:
            raise OSError("seek before the start of the buffer")
        self._pos = base + pos
        return self._pos

    def read(self, size: int | None = -1) -> bytes:
        start = min(self._pos, len(self._buf))
        end = len(self._buf) if size is None or size < 0 else min(len(self._buf), start + size)
        self._pos = max(self._pos, end)
        return bytes(self._buf[start:end])

    def readinto(self, b) -> int:
        n = max(0, min(len(b), len(self._buf) - self._pos))
        b[:n] = self._buf[self._pos : self._pos + n]
        self._pos += n
        return n


def read_zip(
    source: str | os.PathLike | bytes | bytearray,
    budget: Budget,
    where: str,
    *,
    card: str | None = None,
    card_limit: int | None = None,
) -> dict[str, bytearray]:
    """Every member of a zip archive (a path or a buffer), read within ``budget``.

    ``where`` names the archive in messages. ``card``/``card_limit``: a member held to a smaller
    cap. Raises :class:`IntegrityError` for a directory that is too large, too many or repeated
    members, an encrypted member or one compressed by another method than stored or deflate, a
    declared size beyond the budget or beyond what the compressed bytes can produce, and a member
    that does not hold its declared size.
    """
    fp = _View(source) if isinstance(source, (bytes, bytearray)) else open(source, "rb")  # noqa: SIM115 (closed below)
    try:
        fp.seek(0, io.SEEK_END)
        size = fp.tell()
        entries, cd_size = _directory(fp, size, where)
        if entries > MAX_MEMBERS or cd_size > MAX_DIRECTORY:
            raise IntegrityError(
                f"{where}: the archive lists {entries:,} members in a {cd_size:,}-byte "
                "directory; a model "
                f"file holds a few members (at most {MAX_MEMBERS}, directory "
                f"{MAX_DIRECTORY:,} bytes)"
            )
        fp.seek(0)
        try:
            with zipfile.ZipFile(fp) as zf:
                infos = zf.infolist()
                names = [i.filename for i in infos]
                if len(infos) > MAX_MEMBERS or len(set(names)) != len(names):
                    raise IntegrityError(
                        f"{where}: the archive lists members {names[:MAX_MEMBERS]}: too "
                        "many, or repeated"
                    )
                odd = [n for n in names if not n.isprintable() or len(n) > MAX_NAME]
                if odd:
                    raise IntegrityError(
                        f"{where}: member name {odd[0][:MAX_NAME]!r} is not a printable name "
                        "of at most "
                        f"{MAX_NAME} characters"
                    )
                for info in infos:
                    _check_info(info, budget, where, card_limit if info.filename == card else None)
                return {info.filename: _read_member(zf, info, where) for info in infos}
        except (
            zipfile.BadZipFile,
            zlib.error,
            EOFError,
            OSError,
            NotImplementedError,
            RuntimeError,
        ) as exc:
            raise IntegrityError(f"{where}: zip archive is corrupted ({exc})") from exc
    finally:
        fp.close()


def _check_info(info: zipfile.ZipInfo, budget: Budget, where: str, card_limit: int | None) -> None:
    name = info.filename
    if info.flag_bits & 0x1:
        raise IntegrityError(f"{where}: member {name} is encrypted; model files are not")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise IntegrityError(
            f"{where}: member {name} uses compression method {info.compress_type}; model "
            "files are stored "
            "or deflated"
        )
    if info.compress_type == zipfile.ZIP_STORED and info.file_size != info.compress_size:
        raise IntegrityError(
            f"{where}: stored member {name} declares {info.file_size:,} bytes but occupies "
            f"{info.compress_size:,}"
        )
    if (
        info.compress_type == zipfile.ZIP_DEFLATED
        and info.file_size > DEFLATE_MAX_RATIO * info.compress_size + _DEFLATE_SLACK
    ):
        raise IntegrityError(
            f"{where}: member {name} declares {info.file_size:,} bytes from "
            f"{info.compress_size:,} compressed bytes, "
            f"more than deflate can produce ({DEFLATE_MAX_RATIO} times): a forged size; "
            "refusing to load it"
        )
    if card_limit is not None and info.file_size > card_limit:
        raise IntegrityError(
            f"{where}: member {name} declares {info.file_size:,} bytes; a card is at most "
            f"{card_limit:,} "
            f"bytes ({_override_hint()})"
        )
    budget.take(info.file_size, f"{where}: member {name}")


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, where: str) -> bytearray:
    """The member's bytes, read in chunks into a buffer of its declared size and never more than
    that."""
    out = bytearray(info.file_size)
    n = 0
    with zf.open(info) as f:
        while chunk := f.read(min(_CHUNK, info.file_size - n + 1)):
            if n + len(chunk) > info.file_size:
                raise IntegrityError(
                    f"{where}: member {info.filename} holds more than its declared "
                    f"{info.file_size:,} bytes"
                )
            out[n : n + len(chunk)] = chunk
            n += len(chunk)
    if n != info.file_size:
        raise IntegrityError(
            f"{where}: member {info.filename} holds {n:,} bytes, not its declared "
            f"{info.file_size:,}"
        )
    return out


# ---------------------------------------------------------------------------- npz / npy
def read_npz(data: bytes | bytearray, budget: Budget, where: str) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` held in memory, each ``.npy`` header checked before its array
    exists."""
    members = read_zip(data, budget, where)
    out = {}
    for name, raw in members.items():
        if not name.endswith(".npy") or name[:-4] in out:
            raise IntegrityError(f"{where}: member {name!r} is not a .npy array (or is repeated)")
        out[name[:-4]] = _read_npy(raw, f"{where}: array {name[:-4]}")
    return out


def _read_npy(raw: bytearray, where: str) -> np.ndarray:
    """The array of a ``.npy`` member: a view of ``raw`` (writable, no copy) once its header is
    checked."""
    fmt = np.lib.format
    f = _View(raw)
    try:
        version = fmt.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(f)
        else:
            raise IntegrityError(
                f"{where}: .npy format version {version} is not read (1.0 or 2.0 only)"
            )
    except (ValueError, TypeError, SyntaxError, EOFError) as exc:
        raise IntegrityError(f"{where}: .npy header is corrupted ({exc})") from exc
    if dtype.hasobject:
        raise IntegrityError(
            f"{where}: holds Python objects (dtype {dtype}), which need pickle; refusing to load"
        )
    if dtype.kind not in ARRAY_KINDS or dtype.names is not None or dtype.subdtype is not None:
        raise IntegrityError(
            f"{where}: dtype {dtype} is not a plain number, boolean or string dtype"
        )
    if any(not isinstance(d, int) or d < 0 for d in shape):
        raise IntegrityError(f"{where}: .npy header declares shape {shape}")
    declared = math.prod(shape) * dtype.itemsize
    held = len(raw) - f.tell()
    if declared != held:
        raise IntegrityError(
            f"{where}: the .npy header declares shape {shape} of {dtype} ({declared:,} "
            "bytes) but the "
            f"member holds {held:,} bytes: a forged or truncated header"
        )
    try:
        flat = np.frombuffer(raw, dtype=dtype, count=math.prod(shape), offset=f.tell())
        return flat.reshape(shape, order="F" if fortran else "C")
    except (ValueError, TypeError) as exc:
        raise IntegrityError(f"{where}: cannot read the array ({exc})") from exc


# ---------------------------------------------------------------------------- card.json
def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number a card may hold")


def _finite_float(text: str) -> float:
    v = float(text)
    if not math.isfinite(v):
        raise ValueError(f"{text} is beyond the range of floats")
    return v


def parse_card(data: bytes, where: str) -> dict:
    """``card.json`` as a dict: UTF-8 JSON, finite numbers only, an object nested at most
    :data:`MAX_JSON_DEPTH` deep."""
    try:
        text = data.decode("utf-8")
        card = json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    except RecursionError as exc:
        raise IntegrityError(f"{where}: card.json is nested too deeply") from exc
    except (
        UnicodeDecodeError,
        ValueError,
    ) as exc:  # json.JSONDecodeError, non-finite numbers, over-long integers
        raise IntegrityError(f"{where}: card.json is corrupted ({exc})") from exc
    if not isinstance(card, dict):
        raise ModelError(
            f"{where}: card.json holds a JSON {type(card).__name__}, not an object: not an "
            "earlyia model card"
        )
    stack = [(card, 1)]
    while stack:
        obj, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise IntegrityError(
                f"{where}: card.json is nested more than {MAX_JSON_DEPTH} levels deep"
            )
        for v in obj.values() if isinstance(obj, dict) else obj:
            if isinstance(v, (dict, list)):
                stack.append((v, depth + 1))
    return card


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def check_card(card: Mapping, where: str, *, calibration_method: str | None) -> None:
    """Refuse a card whose entries lack the types the code reads (:class:`ModelError` naming the
    entry).

    ``calibration_method``: the method of the file's ``calibration.npz`` (None without one); the
    card's ``calibration`` entry must say the same.
    """

    def bad(key: str, what: str) -> ModelError:
        return ModelError(f"{where}: card entry {key!r} {what}")

    features = card.get("features")
    if (
        not isinstance(features, list)
        or not features
        or not all(isinstance(n, str) for n in features)
    ):
        raise bad("features", "must be a non-empty list of feature names")
    if len(set(features)) != len(features):
        dup = sorted({n for n in features if features.count(n) > 1})[:5]
        raise bad("features", f"repeats feature name(s) {dup}")
    if not _is_int(card.get("n_features")) or card["n_features"] != len(features):
        raise bad(
            "n_features",
            f"is {card.get('n_features')!r} but the card lists {len(features)} features",
        )
    if not _is_int(card.get("n_trees")) or card["n_trees"] < 1:
        raise bad("n_trees", f"must be a positive integer, got {card.get('n_trees')!r}")
    if not isinstance(card.get("hash"), str):
        raise bad("hash", "must be the content hash (a string)")
    if not isinstance(card.get("extractor"), dict):
        raise bad("extractor", "must be the extractor configuration (an object)")
    for key in (
        "type_map",
        "classifier",
        "training",
        "metrics",
        "calibration",
        "evidence",
        "selection",
        "gate",
        "lineage",
        "versions",
        "augmentation",
    ):
        if card.get(key) is not None and not isinstance(card[key], dict):
            raise bad(key, f"must be an object or null, got {type(card[key]).__name__}")
    for key in ("positive_class", "operating_points", "operating_curves"):
        if card.get(key) is not None and not isinstance(card[key], list):
            raise bad(key, f"must be a list or null, got {type(card[key]).__name__}")
    if not all(isinstance(p, str) for p in card.get("positive_class") or []):
        raise bad("positive_class", "must list type names (strings)")
    training = card.get("training") or {}
    for key in ("object_ids", "alert_ids", "labels"):
        if training.get(key) is not None and not isinstance(training[key], list):
            raise bad(f"training.{key}", "must be a list")
    _check_type_map(card, bad)
    _check_calibration_entry(card, bad, calibration_method)
    _check_evidence(card, bad, features)
    _check_operating(card, bad)
    _check_selection(card, bad)
    _check_gate(card, bad)


def _check_type_map(card: Mapping, bad) -> None:
    tm = card.get("type_map")
    if tm is None:
        return
    for key in ("positive", "unlabelled"):
        if key in tm and not (
            isinstance(tm[key], list) and all(isinstance(t, str) for t in tm[key])
        ):
            raise bad(f"type_map.{key}", "must list type names (strings)")
    try:
        TypeMap.from_config(tm)
    except (EarlyIAError, TypeError, ValueError) as exc:
        raise bad("type_map", f"is not a type map ({exc})") from exc


def _check_calibration_entry(card: Mapping, bad, method: str | None) -> None:
    entry = card.get("calibration")
    said = entry.get("method") if entry else None
    if said != method:
        holds = f"a {method!r} calibration map" if method else "no calibration map"
        raise bad("calibration", f"says {said!r} but the file holds {holds}")


def _check_evidence(card: Mapping, bad, features: list[str]) -> None:
    ev = card.get("evidence")
    if not ev:
        return
    if ev.get("feature") not in features:
        raise bad("evidence.feature", f"is {ev.get('feature')!r}, not one of the model's features")
    if not isinstance(ev.get("edges"), list) or not all(_is_int(e) for e in ev["edges"]):
        raise bad("evidence.edges", "must list the strata's lower bounds (integers)")
    prev = ev.get("prevalence")
    if not (_is_number(prev) and 0.0 < prev < 1.0):
        raise bad(
            "evidence.prevalence", f"must be a fraction strictly between 0 and 1, got {prev!r}"
        )
    judged = ev.get("judged_from")
    if judged is not None and not (_is_number(judged) and judged >= 0):
        raise bad("evidence.judged_from", f"must be a number of detections or null, got {judged!r}")


def _check_operating(card: Mapping, bad) -> None:
    for i, op in enumerate(card.get("operating_points") or []):
        key = f"operating_points[{i}]"
        if not isinstance(op, dict):
            raise bad(key, "must be an object")
        if not (_is_int(op.get("max_detections")) and op["max_detections"] >= 1):
            raise bad(
                f"{key}.max_detections",
                f"must be a positive integer, got {op.get('max_detections')!r}",
            )
        for k in ("min_purity", "efficiency", "purity"):
            v = op.get(k)
            if (k == "min_purity" or v is not None) and not (_is_number(v) and 0.0 <= v <= 1.0):
                raise bad(
                    f"{key}.{k}",
                    f"must be a number in [0, 1]{'' if k == 'min_purity' else ' or null'}, "
                    f"got {v!r}",
                )
        if op.get("threshold") is not None and not _is_number(op["threshold"]):
            raise bad(f"{key}.threshold", f"must be a number or null, got {op['threshold']!r}")
    for i, entry in enumerate(card.get("operating_curves") or []):
        if not isinstance(entry, dict):
            raise bad(f"operating_curves[{i}]", "must be an object")
        try:
            OperatingCurve.from_card(entry)
        except ModelError as exc:
            raise bad(f"operating_curves[{i}]", f"is not an operating curve: {exc}") from exc


def _check_selection(card: Mapping, bad) -> None:
    sel = card.get("selection")
    if sel is None:
        return
    rule = sel.get("rule", "early")
    if rule not in SELECTION_RULES:
        raise bad("selection.rule", f"is {rule!r}; this version knows {list(SELECTION_RULES)}")
    func = {"early": select.select_early, "fink": select.fink_cuts}.get(rule)
    if func is None:
        return
    accepted = set(inspect.signature(func).parameters) - {"lc", "per"}
    unknown = sorted(set(sel) - {"rule"} - accepted)
    if unknown:
        raise bad(
            "selection",
            f"sets {unknown}, which the {rule!r} selection does not take (it takes "
            f"{sorted(accepted)})",
        )


def _check_gate(card: Mapping, bad) -> None:
    gate = card.get("gate")
    if not gate:
        return
    if gate.get("kind") not in GATE_KINDS:
        raise bad("gate.kind", f"is {gate.get('kind')!r}; this version knows {list(GATE_KINDS)}")
    if not _is_number(gate.get("min_slope_sig")) or not _is_int(gate.get("min_points")):
        raise bad("gate", "needs a number min_slope_sig and an integer min_points")
    if not isinstance(gate.get("prefix", ""), str):
        raise bad("gate.prefix", "must be a string")
