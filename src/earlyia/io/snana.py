"""SNANA text light curves (``.DAT``): single files, directories of them, or a tar archive read in
one stream.

A DAT file is ``KEY: value`` header lines, then ``VARLIST:`` and one ``OBS:`` line per epoch, then
``END:``. Headers are parsed per file (a few dozen lines); the ``OBS:`` blocks of all files are
concatenated and parsed by one vectorised CSV call, so the 21 319 SNPCC files (220 MB uncompressed)
take a few seconds, mostly ``xz``.

Conventions: ``FLUXCAL``/``FLUXCALERR`` are already our unit (zero point 27.5). Every ``OBS`` row is
a measured (forced) flux, so it is ``detected`` unless a ``PHOTFLAG`` column exists, in which case
``detected`` means the SNANA detection bit (4096) and a non-detection keeps its measured flux.
Epochs with ``FLUXCALERR <= 0`` (SNANA's -9 "not simulated", e.g. the z band of low-redshift SNPCC
objects) are dropped and reported. Simulated truth goes to the objects: ``sim_type`` from
``SIM_COMMENT`` (``SN Type = Ia , ...``), ``label = "SN " + sim_type`` (TNS spelling, so the default
positive class "SN Ia" works), ``sim_non1a``, ``sim_model``, ``sim_redshift``, ``sim_peakmjd``, and
``sample`` = ``spec`` when ``SNTYPE`` is set (the SNPCC spectroscopic training sample), else
``photo``.
"""

from __future__ import annotations

import io
import lzma
import re
import tarfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from earlyia.errors import FormatError, InputError, Problem
from earlyia.io.registry import is_tar
from earlyia.io.table import SURVEY_BANDS, LightCurves

#: SNANA photometry flag bit meaning "detection by the difference-imaging pipeline".
PHOTFLAG_DETECTION = 4096
_OBS = b"\nOBS:"
_TYPE_RE = re.compile(r"SN\s*Type\s*=\s*([^,]+)", re.I)
_HEADER_KEYS = {
    "SURVEY": "survey",
    "SNID": "object_id",
    "SNTYPE": "sntype",
    "FILTERS": "filters",
    "RA": "ra",
    "DECL": "dec",
    "DEC": "dec",
    "MWEBV": "mwebv",
    "REDSHIFT_FINAL": "redshift",
    "HOST_GALAXY_PHOTO-Z": "hostgal_photoz",
    "SIM_MODEL": "sim_model",
    "SIM_NON1a": "sim_non1a",
    "SIM_COMMENT": "sim_comment",
    "SIM_REDSHIFT": "sim_redshift",
    "SIM_PEAKMJD": "sim_peakmjd",
    "SIM_TYPE_NAME": "sim_type",
    "SIM_TYPE_INDEX": "sim_type_index",
    "SIM_GENTYPE": "sim_gentype",
}
_NUMERIC = {
    "sntype",
    "ra",
    "dec",
    "mwebv",
    "redshift",
    "hostgal_photoz",
    "sim_non1a",
    "sim_redshift",
    "sim_peakmjd",
    "sim_type_index",
    "sim_gentype",
}
_TEXT_KEEP = {"survey", "object_id", "filters", "sim_comment", "sim_type"}


def _first_token(value: str) -> str:
    parts = value.split()
    return parts[0] if parts else ""


_HEADER_RE = re.compile(
    r"^[ \t]*(" + "|".join(re.escape(k) for k in [*_HEADER_KEYS, "VARLIST"]) + r")[ \t]*:(.*)$",
    re.M,
)


def parse_header(text: str) -> tuple[dict, list[str]]:
    """Header keys we use (see :data:`_HEADER_KEYS`) and the ``VARLIST`` names of one DAT file's
    header part."""
    out: dict = {}
    varlist: list[str] = []
    for m in _HEADER_RE.finditer(text):
        key, value = m.group(1), m.group(2)
        if key == "VARLIST":
            varlist = value.split()
            continue
        name = _HEADER_KEYS[key]
        if name in out:
            continue
        if name in _TEXT_KEEP:
            out[name] = value.strip() if name == "sim_comment" else _first_token(value)
        elif name == "sim_model":
            out[name] = _first_token(value)
        else:
            try:
                out[name] = float(_first_token(value))
            except ValueError:
                out[name] = np.nan
    return out, varlist


def split_dat(data: bytes) -> tuple[str, bytes]:
    """(header text, the block of ``OBS:`` lines) of one DAT file's bytes."""
    start = data.find(_OBS)
    if start < 0:
        if data.startswith(b"OBS:"):
            start = 0
        else:
            return data.decode("latin-1"), b""
    else:
        start += 1
    end = data.find(b"\nEND:", start)
    block = data[start:] if end < 0 else data[start : end + 1]
    if not block.endswith(b"\n"):
        block += b"\n"
    if block.count(b"\n") != block.count(b"OBS:"):  # comments, blank lines or CRLF inside the block
        block = (
            b"\n".join(ln.strip() for ln in block.splitlines() if ln.strip().startswith(b"OBS:"))
            + b"\n"
        )
    return data[:start].decode("latin-1"), block


# ----------------------------------------------------------------------------------------------
# members
def iter_members(path: Path) -> Iterator[tuple[str, bytes]]:
    """``(name, bytes)`` of every ``.DAT`` file in a file, directory or tar archive (any
    compression), streamed."""
    path = Path(path)
    if path.is_dir():
        for f in sorted(path.rglob("*")):
            if f.is_file() and f.suffix == ".DAT":
                yield str(f), f.read_bytes()
        return
    if _is_tar(path):
        with tarfile.open(path, "r|*") as tar:
            for member in tar:
                if member.isfile() and member.name.endswith(".DAT"):
                    fh = tar.extractfile(member)
                    if fh is not None:
                        yield f"{path}:{member.name}", fh.read()
        return
    yield str(path), path.read_bytes()


def _is_tar(path: Path) -> bool:
    return is_tar(path)


# ----------------------------------------------------------------------------------------------
# reading
def read_snana(
    path: str | Path, *, survey: str | None = None, max_objects: int | None = None
) -> LightCurves:
    """Read SNANA DAT light curves from a file, a directory or a tar archive (``.tar``, ``.tar.xz``,
    ``.tar.gz``).

    A damaged member becomes a :class:`Problem` (the rest is read); an archive that cannot be
    decompressed, or that holds no DAT file, raises :class:`FormatError`. ``max_objects`` stops
    after that many files (quick looks).
    """
    path = Path(path)
    if not path.exists():
        raise FormatError("no such file or directory", source=str(path))
    problems: list[Problem] = []
    headers: list[dict] = []
    blocks: dict[tuple[str, ...], list[tuple[int, bytes]]] = {}
    try:
        for name, data in iter_members(path):
            try:
                head_text, block = split_dat(data)
                head, varlist = parse_header(head_text)
            except (UnicodeDecodeError, ValueError) as exc:
                problems.append(Problem(name, None, f"unreadable SNANA file ({exc}); skipped"))
                continue
            if "object_id" not in head:
                problems.append(
                    Problem(name, None, "no 'SNID:' header; not an SNANA light curve; skipped")
                )
                continue
            if not block or not varlist:
                problems.append(
                    Problem(name, head["object_id"], "no VARLIST/OBS photometry; skipped")
                )
                continue
            head["_member"] = name
            blocks.setdefault(tuple(varlist), []).append((len(headers), block))
            headers.append(head)
            if max_objects is not None and len(headers) >= max_objects:
                break
    except (tarfile.TarError, lzma.LZMAError, EOFError, OSError) as exc:
        if not headers:
            raise FormatError(
                f"cannot read SNANA archive ({type(exc).__name__}: {exc}); is it complete?",
                source=str(path),
            ) from exc
        problems.append(
            Problem(
                str(path),
                None,
                f"archive damaged after {len(headers)} light curve(s) ({exc}); rest skipped",
            )
        )
    if not headers:
        raise FormatError(
            "no SNANA light curve (.DAT with SNID:/VARLIST:/OBS:) found", source=str(path)
        )

    phot_parts = []
    for varlist, items in blocks.items():
        phot_parts.append(_parse_blocks(varlist, items, headers, problems))
    phot = pd.concat(phot_parts, ignore_index=True) if phot_parts else pd.DataFrame()
    if phot.empty:
        raise InputError(
            "no photometry could be parsed; " + "; ".join(str(p) for p in problems[:3]),
            source=str(path),
        )

    objects = pd.DataFrame(headers)
    surveys = objects["survey"].dropna().unique() if "survey" in objects.columns else []
    survey = survey or (str(surveys[0]) if len(surveys) else "")
    objects = _object_columns(objects)
    bands = SURVEY_BANDS.get(survey)
    if bands is None or not set(phot["band"].unique()) <= set(bands):
        bands = tuple(sorted(phot["band"].unique()))
    lc = LightCurves.from_frames(phot, objects, None, bands=bands, survey=survey, source=str(path))
    lc.problems = problems + lc.problems
    return lc


def _parse_blocks(
    varlist: tuple[str, ...],
    items: list[tuple[int, bytes]],
    headers: list[dict],
    problems: list[Problem],
) -> pd.DataFrame:
    """Parse the OBS blocks of many files with one CSV call; on failure, file by file (bad files
    -> problems)."""
    upper = [v.upper() for v in varlist]
    need = [
        c
        for c in ("MJD", "FLT", "FLUXCAL", "FLUXCALERR")
        if c not in upper and not (c == "FLT" and "BAND" in upper)
    ]
    if need:
        for hi, _ in items:
            problems.append(
                Problem(
                    headers[hi]["_member"],
                    headers[hi]["object_id"],
                    f"VARLIST lacks {need}; skipped",
                )
            )
        return pd.DataFrame()
    names = ["_tag", *upper]

    def parse(blob: bytes) -> pd.DataFrame:
        df = pd.read_csv(
            io.BytesIO(blob),
            sep=r"\s+",
            header=None,
            names=names,
            usecols=range(len(names)),
            engine="c",
            dtype={"FLT": str, "BAND": str},
        )
        if len(df) and (df["_tag"] != "OBS:").any():
            raise ValueError("a line is not an OBS: row")
        return df

    try:
        df = parse(b"".join(b for _, b in items))
        counts = np.array([b.count(b"\n") for _, b in items], np.int64)
        if counts.sum() != len(df):
            raise ValueError("row count mismatch")
        owners = np.repeat([hi for hi, _ in items], counts)
    except (ValueError, pd.errors.ParserError):
        frames, owner_parts = [], []
        for hi, blob in items:
            try:
                d = parse(blob)
                d = d.astype({c: np.float64 for c in ("MJD", "FLUXCAL", "FLUXCALERR")})
            except (ValueError, pd.errors.ParserError) as exc:
                problems.append(
                    Problem(
                        headers[hi]["_member"],
                        headers[hi]["object_id"],
                        f"bad OBS rows ({exc}); skipped",
                    )
                )
                continue
            frames.append(d)
            owner_parts.append(np.full(len(d), hi))
        if not frames:
            return pd.DataFrame()
        df = pd.concat(frames, ignore_index=True)
        owners = np.concatenate(owner_parts)
    ids = np.array([h["object_id"] for h in headers], dtype=object)
    out = pd.DataFrame(
        {
            "object_id": ids[owners],
            "mjd": pd.to_numeric(df["MJD"], errors="coerce").to_numpy(np.float64),
            "band": df["FLT" if "FLT" in df.columns else "BAND"]
            .astype(str)
            .str.strip()
            .to_numpy(object),
            "flux": pd.to_numeric(df["FLUXCAL"], errors="coerce").to_numpy(np.float64),
            "flux_err": pd.to_numeric(df["FLUXCALERR"], errors="coerce").to_numpy(np.float64),
        }
    )
    if "PHOTFLAG" in df.columns:
        flag = pd.to_numeric(df["PHOTFLAG"], errors="coerce").fillna(0).astype(np.int64).to_numpy()
        out["detected"] = (flag & PHOTFLAG_DETECTION) > 0
    else:
        out["detected"] = True
    # SNANA writes -9 (FLUXCALERR <= 0) for epochs that were not simulated/measured: drop those
    # epochs, keep the object
    null = ~(out["flux_err"].to_numpy() > 0) & np.isfinite(out["mjd"].to_numpy())
    if null.any():
        for oid, n in out.loc[null, "object_id"].value_counts(sort=False).items():
            problems.append(
                Problem(
                    headers[0]["_member"].split(":")[0],
                    str(oid),
                    f"{n} epoch(s) with FLUXCALERR <= 0 (SNANA null value) dropped; object kept",
                )
            )
        out = out[~null]
    return out


def sim_type_from_comment(comment: object) -> str | None:
    """``'SN Type = Ia , MODEL = ...'`` -> ``'Ia'`` (None when absent)."""
    if not isinstance(comment, str):
        return None
    m = _TYPE_RE.search(comment)
    return m.group(1).strip() if m else None


def _object_columns(objects: pd.DataFrame) -> pd.DataFrame:
    o = objects.drop(columns=["_member", "survey", "filters"], errors="ignore").copy()
    o["object_id"] = o["object_id"].astype(str)
    if "sim_type" not in o.columns and "sim_comment" in o.columns:
        o["sim_type"] = [sim_type_from_comment(c) for c in o["sim_comment"]]
    if "sim_type" in o.columns:
        o["label"] = [f"SN {t}" if isinstance(t, str) and t else None for t in o["sim_type"]]
        o["is_ia"] = o["sim_type"].astype(str).str.fullmatch(r"Ia").to_numpy(bool)
    if "sntype" in o.columns:
        o["sample"] = np.where(o["sntype"].fillna(-9).to_numpy() > 0, "spec", "photo")
    return o


# ----------------------------------------------------------------------------------------------
# detection
def detect_snana(path: Path) -> bool:
    """A DAT file with ``SNID:`` in its first lines, a directory with such files, or a tar with
    ``.DAT`` members."""
    path = Path(path)
    if path.is_dir():
        for f in path.iterdir():
            if f.is_file() and f.suffix == ".DAT":
                return _looks_like_dat(f)
        return False
    if _is_tar(path):
        with tarfile.open(path, "r|*") as tar:
            for k, member in enumerate(tar):
                if member.isfile() and member.name.endswith(".DAT"):
                    return True
                if k > 50:
                    return False
        return False
    return _looks_like_dat(path)


def _looks_like_dat(path: Path) -> bool:
    if not path.is_file():
        return False
    with open(path, "rb") as fh:
        head = fh.read(4096)
    return (b"SNID:" in head) and (b"SURVEY:" in head or b"VARLIST:" in head or b"FILTERS:" in head)
