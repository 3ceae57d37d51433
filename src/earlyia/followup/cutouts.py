"""Files posted with a target: its light curve and the alert's image cutouts, as PNG.

ZTF alerts carry three stamps, ``cutoutScience``, ``cutoutTemplate`` and ``cutoutDifference``
(``{"fileName", "stampData"}``), each a gzipped FITS file with one simple primary HDU (63x63
pixels). They are parsed here without astropy (header cards up to ``END``,
``BITPIX``/``NAXISn``/``BSCALE``/ ``BZERO``/``BLANK``, big-endian data) and drawn side by side with
matplotlib; a stamp that cannot be drawn is attached as the FITS file it is. Alerts without stamps
(other formats, Rubin) give none.
"""

from __future__ import annotations

import gzip
import io
import re
import tarfile
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from earlyia.errors import EarlyIAError, FormatError
from earlyia.followup.notify import Attachment, escape, lightcurve_png
from earlyia.io import expand_inputs

CUTOUT_KINDS = ("cutoutScience", "cutoutTemplate", "cutoutDifference")
_BITPIX = {8: ">u1", 16: ">i2", 32: ">i4", 64: ">i8", -32: ">f4", -64: ">f8"}
_BLOCK = 2880


def read_fits_image(data: bytes, source: str = "cutout") -> np.ndarray:
    """The 2-D image of a (gzipped) FITS file's primary HDU, as float64 with BSCALE/BZERO
    applied."""
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise FormatError(f"not a readable gzip stream ({exc})", source=source) from exc
    header: dict[str, str] = {}
    pos = 0
    while "END" not in header:
        if pos + _BLOCK > len(data):
            raise FormatError("FITS header without END card (truncated or not FITS)", source=source)
        block = data[pos : pos + _BLOCK]
        pos += _BLOCK
        for i in range(0, _BLOCK, 80):
            card = block[i : i + 80].decode("ascii", "replace")
            keyword = card[:8].strip()
            if keyword == "END":
                header["END"] = ""
                break
            if card[8:10] == "= " and keyword:
                value = card[10:].strip()
                header[keyword] = (
                    value.split("'")[1] if value.startswith("'") else value.split("/")[0].strip()
                )
    if header.get("SIMPLE") != "T":
        raise FormatError("not a FITS primary HDU (SIMPLE = T missing)", source=source)
    try:
        bitpix, naxis = int(header["BITPIX"]), int(header["NAXIS"])
        if naxis != 2:
            raise FormatError(f"FITS image has NAXIS = {naxis}, expected 2", source=source)
        n1, n2 = int(header["NAXIS1"]), int(header["NAXIS2"])
        bscale, bzero = float(header.get("BSCALE", 1.0)), float(header.get("BZERO", 0.0))
    except (KeyError, ValueError) as exc:
        raise FormatError(f"FITS header lacks a usable {exc} card", source=source) from exc
    if bitpix not in _BITPIX or not (0 < n1 <= 4096 and 0 < n2 <= 4096):
        raise FormatError(f"unsupported FITS image (BITPIX {bitpix}, {n1} x {n2})", source=source)
    dtype = np.dtype(_BITPIX[bitpix])
    nbytes = n1 * n2 * dtype.itemsize
    raw = data[pos : pos + nbytes]
    if len(raw) < nbytes:
        raise FormatError(f"FITS data truncated ({len(raw)} of {nbytes} bytes)", source=source)
    image = np.frombuffer(raw, dtype).reshape(n2, n1).astype(np.float64)
    if bitpix > 0 and "BLANK" in header:
        image[np.frombuffer(raw, dtype).reshape(n2, n1) == int(header["BLANK"])] = np.nan
    return image * bscale + bzero


def _plain(text: str) -> str:
    """Text for a matplotlib title (a ``$`` would start math mode)."""
    return str(text).replace("$", r"\$")


def cutouts_png(images: dict[str, np.ndarray], title: str) -> bytes:
    """Science, template and difference stamps side by side (0.5-99.5 percentile stretch)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(images), figsize=(2.6 * len(images), 2.9), squeeze=False)
    for ax, (kind, image) in zip(axes[0], images.items(), strict=True):
        finite = image[np.isfinite(image)]
        lo, hi = np.percentile(finite, [0.5, 99.5]) if finite.size else (0.0, 1.0)
        ax.imshow(
            image,
            origin="lower",
            cmap="gray",
            vmin=lo,
            vmax=hi if hi > lo else lo + 1,
            interpolation="nearest",
        )
        ax.set_title(kind.removeprefix("cutout"), fontsize=9)
        ax.set_axis_off()
    fig.suptitle(_plain(title), fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return buf.getvalue()


# -- stamps from alert files
# ------------------------------------------------------------------------
def _stamp(value) -> tuple[str, bytes] | None:
    if isinstance(value, dict):
        data = value.get("stampData")
        name = value.get("fileName") or ""
    else:
        data, name = value, ""
    if isinstance(data, bytes | bytearray) and len(data) > 0:
        return str(name), bytes(data)
    return None


def _avro_alerts(fh, wanted: set[str]) -> Iterator[tuple[str, str, float, dict]]:
    import fastavro

    for rec in fastavro.reader(fh):
        oid = str(rec.get("objectId"))
        if oid not in wanted:
            continue
        cand = rec.get("candidate") or {}
        stamps = {k: s for k in CUTOUT_KINDS if (s := _stamp(rec.get(k))) is not None}
        yield (
            oid,
            str(rec.get("candid") or cand.get("candid") or ""),
            float(cand.get("jd") or 0.0),
            stamps,
        )


def _parquet_alerts(path: Path, wanted: set[str]) -> Iterator[tuple[str, str, float, dict]]:
    import pyarrow.parquet as pq

    names = pq.read_schema(path).names
    kinds = [k for k in CUTOUT_KINDS if k in names]
    if "objectId" not in names or not kinds:
        return
    columns = ["objectId", *kinds] + [c for c in ("candid", "candidate") if c in names]
    table = pq.read_table(path, columns=columns, filters=[("objectId", "in", sorted(wanted))])
    for row in table.to_pylist():
        cand = row.get("candidate") or {}
        stamps = {k: s for k in kinds if (s := _stamp(row.get(k))) is not None}
        yield (
            str(row["objectId"]),
            str(row.get("candid") or cand.get("candid") or ""),
            float(cand.get("jd") or 0.0),
            stamps,
        )


def _alerts(path: Path, wanted: set[str]) -> Iterator[tuple[str, str, float, dict]]:
    name = path.name.lower()
    if name.endswith(".parquet"):
        yield from _parquet_alerts(path, wanted)
    elif ".tar" in name or name.endswith((".tgz", ".txz", ".tbz2")):
        with tarfile.open(path, "r|*") as tar:
            for member in tar:
                if member.isfile() and member.name.endswith(".avro"):
                    fh = tar.extractfile(member)
                    if fh is not None:
                        yield from _avro_alerts(io.BytesIO(fh.read()), wanted)
    elif name.endswith(".avro"):
        with open(path, "rb") as fh:
            yield from _avro_alerts(fh, wanted)


def find_cutouts(
    paths: str | Path | Iterable[str | Path],
    targets: dict[str, str | None],
    problems: list[str] | None = None,
) -> dict[str, dict[str, tuple[str, bytes]]]:
    """object id -> {stamp kind: (file name, gzipped FITS bytes)} for the targets whose alerts carry
    stamps.

    ``targets`` maps an object id to the alert id it was chosen on: that alert's stamps are taken,
    else those of the object's latest alert with stamps. A file that cannot be read adds a line to
    ``problems`` and the others are still read.
    """
    wanted = {str(k) for k in targets}
    best: dict[str, tuple[tuple[int, float], dict]] = {}
    for path in expand_inputs(paths):
        try:
            for oid, candid, jd, stamps in _alerts(Path(path), wanted):
                if not stamps:
                    continue
                rank = (int(candid != "" and candid == str(targets.get(oid) or "")), jd)
                if oid not in best or rank > best[oid][0]:
                    best[oid] = (rank, stamps)
        except (OSError, ValueError, EOFError, tarfile.TarError, EarlyIAError) as exc:
            if problems is not None:
                problems.append(f"{path}: cutouts not read ({type(exc).__name__}: {exc})")
    return {oid: stamps for oid, (_rank, stamps) in best.items()}


def _safe_name(object_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", str(object_id))[:80] or "object"


class TargetFiles:
    """target -> the files to post with it: light-curve PNG and cutouts PNG (or the FITS stamps as
    they are).

    Args:
        lc: light curves (``earlyia.io.read``) for the light-curve PNG, or None. alert_paths: alert
        files (ZTF Avro, a tar of Avro, Parquet) whose stamps are attached, or None.
    """

    def __init__(self, lc=None, alert_paths=None):
        self.lc = lc
        self.alert_paths = alert_paths
        self.cutouts: dict[str, dict[str, tuple[str, bytes]]] = {}
        self.problems: list[str] = []

    def prepare(self, targets: list[dict]) -> None:
        """Read the stamps of all targets in one pass over the alert files."""
        if self.alert_paths is not None and targets:
            wanted = {str(t["object_id"]): t.get("alert_id") for t in targets}
            self.cutouts = find_cutouts(self.alert_paths, wanted, self.problems)

    def __call__(self, target: dict) -> list[Attachment]:
        oid = str(target["object_id"])
        name = _safe_name(oid)
        files: list[Attachment] = []
        if self.lc is not None:
            png = lightcurve_png(self.lc, oid)
            if png is not None:
                files.append(
                    Attachment(f"{name}_lightcurve.png", f"{escape(oid)} light curve", png)
                )
        stamps = self.cutouts.get(oid)
        if stamps:
            try:
                images = {
                    kind: read_fits_image(data, f"{oid} {kind}")
                    for kind, (_n, data) in stamps.items()
                }
                files.append(
                    Attachment(
                        f"{name}_cutouts.png", f"{escape(oid)} cutouts", cutouts_png(images, oid)
                    )
                )
            except FormatError as exc:
                self.problems.append(f"{oid}: cutouts attached as FITS ({exc})")
                for kind, (fname, data) in stamps.items():
                    suffix = ".fits.gz" if data[:2] == b"\x1f\x8b" else ".fits"
                    files.append(
                        Attachment(
                            f"{name}_{kind}{suffix}",
                            f"{escape(oid)} {kind} ({escape(fname)})",
                            data,
                        )
                    )
        return files
