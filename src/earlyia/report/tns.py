"""Transient Name Server (TNS) AT reports: the bulk-report JSON, human tables, bot credentials and
URLs.

The JSON follows the TNS bulk-report format (``{"at_report": {"0": {...}, "1": {...}}}``) with the
content Fink's fink-tns sends: the mean position of the object's detections with their scatter as
the error, reporting group and discovery data source, discovery date = the FIRST detection (its
magnitude, magnitude error, limiting magnitude and filter), the last non-detection before it in the
same band (or an archival statement when none is known), and remarks with our score and a link to
the object's page in the broker portal. Posting it and reading the TNS's answer:
:mod:`earlyia.report.tns_api`; sending each object exactly once: :mod:`earlyia.report.submit`.
"""

from __future__ import annotations

import json
import logging
import os
import urllib.parse
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from earlyia import __version__
from earlyia.errors import ConfigError, Problem

log = logging.getLogger(__name__)

#: Default TNS values per survey: instrument id, filter ids per band name, exposure time (s),
#: discovery data source group id. ZTF values are the ones ZTF/AMPEL bots use (ZTF-Cam 196,
#: ztf-g/r/i 110/111/112, source group 48 = ZTF). LSST values are from the Lasair TNS notes: check
#: them on the TNS sandbox before a real report.
SURVEY_TNS = {
    "ZTF": {
        "instrument": "196",
        "filters": {"g": "110", "r": "111", "i": "112"},
        "exptime": "30",
        "data_source": "48",
        "portal": "https://fink-portal.org",
    },
    "LSST": {
        "instrument": "287",
        "filters": {"u": "160", "g": "161", "r": "162", "i": "163", "z": "164", "Y": "165"},
        "exptime": "30",
        "data_source": "165",
        "portal": None,
    },
}
SANDBOX_URL = "https://sandbox.wis-tns.org"
ENV_BOT_ID = "EARLYIA_TNS_BOT_ID"
ENV_BOT_NAME = "EARLYIA_TNS_BOT_NAME"
ENV_API_KEY = "EARLYIA_TNS_API_KEY"
MJD_UNIX_EPOCH = 40587.0


@dataclass(frozen=True)
class TNSConfig:
    """Who reports and how (group ids are TNS numbers; ask the TNS for yours).

    Args:
        reporting_group_id: the TNS group the report is made on behalf of. discovery_data_source_id:
        the TNS group of the data (default: the survey's, e.g. 48 for ZTF). reporter: the reporter
        line (names, "on behalf of ..."). survey: selects instrument and filter ids from
        :data:`SURVEY_TNS`. at_type: TNS AT type ("1" = PSN, possible supernova).
        position_error_arcsec: RA/Dec uncertainty written when fewer than two positions of the
        object
            are known (otherwise the scatter of its detections' positions is the error).
        portal_url: base URL of the broker portal; the remarks link to ``<portal_url>/<object id>``.
            ``None``: the survey's default (ZTF: https://fink-portal.org, LSST: none); ``""``: no
            link.
    """

    reporting_group_id: str
    reporter: str
    discovery_data_source_id: str | None = None
    survey: str = "ZTF"
    at_type: str = "1"
    position_error_arcsec: float = 0.5
    flux_units: str = "1"  # TNS code for AB magnitudes
    extra_remarks: str = ""
    portal_url: str | None = None

    def object_url(self, object_id: str) -> str | None:
        """The object's page in the broker portal, or None when there is no portal."""
        base = self.survey_values().get("portal") if self.portal_url is None else self.portal_url
        if not base:
            return None
        return f"{base.rstrip('/')}/{urllib.parse.quote(str(object_id), safe='')}"

    def survey_values(self) -> dict:
        if self.survey not in SURVEY_TNS:
            raise ConfigError(
                f"no TNS instrument/filter ids known for survey {self.survey!r}; known: "
                f"{sorted(SURVEY_TNS)}"
            )
        return SURVEY_TNS[self.survey]

    def validate(self) -> None:
        if not str(self.reporting_group_id).strip():
            raise ConfigError(
                "TNS reporting group id is empty: pass --reporting-group-id or set "
                "EARLYIA_TNS_REPORTING_GROUP_ID"
            )
        if not str(self.reporter).strip():
            raise ConfigError("TNS reporter is empty: pass --reporter or set EARLYIA_TNS_REPORTER")
        self.survey_values()


def mjd_to_tns_datetime(mjd: float) -> str:
    """``YYYY-MM-DD HH:MM:SS.sss`` (UTC) of an MJD (the discovery/observation date format TNS
    takes)."""
    dt = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(days=float(mjd) - MJD_UNIX_EPOCH)
    return dt.strftime("%Y-%m-%d %H:%M:%S.") + f"{dt.microsecond // 1000:03d}"


def _num(value, fmt: str) -> str:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return ""
    return format(x, fmt) if np.isfinite(x) else ""


def _finite(value) -> bool:
    try:
        return bool(np.isfinite(float(value)))
    except (TypeError, ValueError):
        return False


def remarks_for(
    row: pd.Series, model_id: str | None = None, extra: str = "", url: str | None = None
) -> str:
    """One line: our score (3 decimals), the other classifiers when used, the alert that
    triggered, the portal link."""
    parts = [f"Early SN Ia candidate (earlyia {__version__}): score {float(row['score']):.3f}"]
    if model_id:
        parts[0] += f" (model {model_id})"
    snn = [
        f"{c} {float(row[c]):.3f}"
        for c in ("snn_snia_vs_nonia", "snn_sn_vs_all")
        if c in row and _finite(row[c])
    ]
    if snn and bool(row.get("snn_used", True)):
        parts.append("SuperNNova " + ", ".join(snn))
    trig = f"alert {row['alert_id']}"
    if "n_detections" in row and _finite(row["n_detections"]):
        trig += f" with {int(row['n_detections'])} detections"
    parts.append(trig)
    if extra:
        parts.append(extra)
    text = "; ".join(parts) + "."
    return f"{text} Object data at {url}" if url else text


def _position(row: pd.Series, config: TNSConfig) -> tuple[float, float, float, float]:
    """RA, Dec (deg) and their errors (arcsec): the mean of the detections and their scatter when
    the row has them from two positions or more, else the alert's position with
    ``config.position_error_arcsec``."""
    fallback = float(config.position_error_arcsec)
    if _finite(row.get("ra_mean")) and _finite(row.get("dec_mean")):
        ra, dec = float(row["ra_mean"]), float(row["dec_mean"])
        n = float(row["n_positions"]) if _finite(row.get("n_positions")) else 1.0
        if n >= 2 and _finite(row.get("ra_err_arcsec")) and _finite(row.get("dec_err_arcsec")):
            return ra, dec, float(row["ra_err_arcsec"]), float(row["dec_err_arcsec"])
        return ra, dec, fallback, fallback
    ra = float(row["ra"]) if _finite(row.get("ra")) else np.nan
    dec = float(row["dec"]) if _finite(row.get("dec")) else np.nan
    return ra, dec, fallback, fallback


def at_report_entry(row: pd.Series, config: TNSConfig, *, model_id: str | None = None) -> dict:
    """The TNS AT-report dict of one candidate row (see
    :data:`earlyia.report.candidates.CANDIDATE_COLUMNS`)."""
    sv = config.survey_values()
    filters = sv["filters"]
    first_band = str(row.get("first_det_band", ""))
    if not _finite(row.get("first_det_mjd")) or not _finite(row.get("first_det_mag")):
        raise ConfigError("no first detection (date and magnitude) to report")
    ra, dec, ra_err, dec_err = _position(row, config)
    if not (np.isfinite(ra) and np.isfinite(dec)):
        raise ConfigError("no position to report")
    entry = {
        "ra": {"value": _num(ra, ".6f"), "error": _num(ra_err, ".2f"), "units": "arcsec"},
        "dec": {"value": _num(dec, "+.6f"), "error": _num(dec_err, ".2f"), "units": "arcsec"},
        "reporting_group_id": str(config.reporting_group_id),
        "discovery_data_source_id": str(config.discovery_data_source_id or sv["data_source"]),
        "reporter": config.reporter,
        "discovery_datetime": mjd_to_tns_datetime(row["first_det_mjd"]),
        "at_type": str(config.at_type),
        "internal_name": str(row["object_id"]),
        "remarks": remarks_for(
            row, model_id, config.extra_remarks, config.object_url(str(row["object_id"]))
        ),
    }
    nd_band = str(row.get("last_nondet_band", ""))
    same_band = nd_band == first_band and nd_band in filters
    if (
        _finite(row.get("last_nondet_mjd"))
        and _finite(row.get("last_nondet_limit_mag"))
        and same_band
    ):
        entry["non_detection"] = {
            "obsdate": mjd_to_tns_datetime(row["last_nondet_mjd"]),
            "limiting_flux": _num(row["last_nondet_limit_mag"], ".3f"),
            "flux_units": config.flux_units,
            "filter_value": filters[nd_band],
            "instrument_value": sv["instrument"],
            "exptime": sv["exptime"],
            "observer": "Robot",
            "comments": "last non-detection before the first detection, same filter",
        }
    else:
        why = "no non-detection before the first detection in its filter in the alert history"
        if _finite(row.get("last_nondet_mjd")) and same_band:
            why = (
                f"last non-detection at {mjd_to_tns_datetime(row['last_nondet_mjd'])} UTC, "
                "limiting magnitude unknown"
            )
        entry["non_detection"] = {"archiveid": "0", "archival_remarks": why}
    if first_band not in filters:
        raise ConfigError(
            f"first-detection band {first_band!r} has no TNS filter id for {config.survey}"
        )
    entry["photometry"] = {
        "photometry_group": {
            "0": {
                "obsdate": mjd_to_tns_datetime(row["first_det_mjd"]),
                "flux": _num(row["first_det_mag"], ".3f"),
                "flux_error": _num(row.get("first_det_mag_err"), ".3f"),
                "limiting_flux": _num(row.get("first_det_limit_mag"), ".3f"),
                "flux_units": config.flux_units,
                "filter_value": filters[first_band],
                "instrument_value": sv["instrument"],
                "exptime": sv["exptime"],
                "observer": "Robot",
                "comments": "first detection",
            }
        }
    }
    return entry


@dataclass
class BulkReport:
    """The bulk-report JSON, the objects it holds (in order) and the candidates left out, with
    why."""

    report: dict
    object_ids: list[str]
    alert_ids: list[str]
    problems: list[Problem]


def build_bulk_report(
    candidates: pd.DataFrame,
    config: TNSConfig,
    *,
    model_id: str | None = None,
    validate: bool = True,
) -> BulkReport:
    """``{"at_report": {"0": ..., "1": ...}}`` for the candidate rows, in their order.

    A candidate that cannot be reported (no first detection, a band without TNS filter id) is
    left out and listed in ``problems``; the others still go. ``validate=False`` allows an empty
    reporting group / reporter (a draft to complete before sending).
    """
    if validate:
        config.validate()
    else:
        config.survey_values()
    entries, ids, alerts, problems = {}, [], [], []
    for _, row in candidates.iterrows():
        try:
            entry = at_report_entry(row, config, model_id=model_id)
        except ConfigError as exc:
            problems.append(Problem("tns report", str(row["object_id"]), str(exc)))
            continue
        entries[str(len(entries))] = entry
        ids.append(str(row["object_id"]))
        alerts.append(str(row.get("alert_id", "")))
    return BulkReport({"at_report": entries}, ids, alerts, problems)


# ----------------------------------------------------------------------------------------------
# tables
HUMAN_COLUMNS = (
    ("object_id", "object"),
    ("score", "score"),
    ("snn_snia_vs_nonia", "snn Ia"),
    ("snn_sn_vs_all", "snn SN"),
    ("ra", "RA"),
    ("dec", "Dec"),
    ("discovery", "discovery (UTC)"),
    ("first_det_mag", "disc. mag"),
    ("first_det_band", "band"),
    ("last_nondet", "last non-det. (UTC)"),
    ("last_nondet_limit_mag", "limit"),
    ("n_detections", "n det"),
    ("cdsxmatch", "SIMBAD"),
    ("alert_id", "alert"),
)


def human_table(candidates: pd.DataFrame) -> pd.DataFrame:
    """The candidate columns a person reads, with dates as UTC strings and rounded numbers."""
    c = candidates
    out = pd.DataFrame(index=c.index)
    for key, title in HUMAN_COLUMNS:
        if key == "discovery":
            out[title] = [
                mjd_to_tns_datetime(m)[:16] if _finite(m) else ""
                for m in c.get("first_det_mjd", pd.Series(np.nan, c.index))
            ]
        elif key == "last_nondet":
            out[title] = [
                mjd_to_tns_datetime(m)[:16] if _finite(m) else ""
                for m in c.get("last_nondet_mjd", pd.Series(np.nan, c.index))
            ]
        elif key in c.columns:
            v = c[key]
            if key in ("score", "snn_snia_vs_nonia", "snn_sn_vs_all"):
                v = v.map(lambda x: f"{x:.3f}" if _finite(x) else "")
            elif key in ("ra", "dec"):
                if f"{key}_mean" in c.columns:  # the reported position where known
                    v = c[f"{key}_mean"].where(
                        pd.to_numeric(c[f"{key}_mean"], errors="coerce").notna(), v
                    )
                v = v.map(lambda x: f"{x:.5f}" if _finite(x) else "")
            elif key in ("first_det_mag", "last_nondet_limit_mag"):
                v = v.map(lambda x: f"{x:.2f}" if _finite(x) else "")
            elif key == "n_detections":
                v = v.map(lambda x: str(int(x)) if _finite(x) else "")
            out[title] = v.astype(str)
    return out.reset_index(drop=True)


def markdown_table(table: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (no extra dependency)."""
    if table.empty:
        return "_No candidates._\n"
    cols = list(table.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in table.itertuples(index=False):
        lines.append("| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------
# sending
@dataclass(frozen=True)
class TNSCredentials:
    """Bot credentials. The API key never appears in ``repr``, logs or files."""

    bot_id: str
    bot_name: str
    api_key: str = field(repr=False)

    @classmethod
    def from_env(cls, environ: dict | None = None) -> TNSCredentials:
        env = os.environ if environ is None else environ
        missing = [v for v in (ENV_BOT_ID, ENV_BOT_NAME, ENV_API_KEY) if not env.get(v, "").strip()]
        if missing:
            raise ConfigError(
                f"TNS bot credentials missing: set the environment variable(s) {', '.join(missing)}"
            )
        return cls(env[ENV_BOT_ID].strip(), env[ENV_BOT_NAME].strip(), env[ENV_API_KEY].strip())

    def user_agent(self) -> str:
        marker = {
            "tns_id": int(self.bot_id) if self.bot_id.isdigit() else self.bot_id,
            "type": "bot",
            "name": self.bot_name,
        }
        return "tns_marker" + json.dumps(marker)


def bulk_report_url(url: str) -> str:
    """``<url>/api/bulk-report`` unless ``url`` already names the endpoint."""
    return _endpoint(url, "bulk-report")


def bulk_report_reply_url(url: str) -> str:
    """``<url>/api/bulk-report-reply`` (the per-entry answer to a bulk report), from the base or
    the report URL."""
    return _endpoint(url, "bulk-report-reply")


def _endpoint(url: str, name: str) -> str:
    url = url.rstrip("/")
    for known in ("/bulk-report-reply", "/bulk-report"):
        if url.endswith(known):
            return url[: -len(known)] + "/" + name
    if url.endswith("/api"):
        return f"{url}/{name}"
    return f"{url}/api/{name}"


def redact_url(url: str) -> str:
    """``url`` with any ``user:password@`` replaced by ``***@``: the form shown in messages and
    stored in files."""
    try:
        parts = urllib.parse.urlsplit(str(url))
    except ValueError:
        return "<unparsable URL>"
    if "@" not in parts.netloc:
        return str(url)
    host = parts.netloc.rsplit("@", 1)[1]
    return urllib.parse.urlunsplit(
        (parts.scheme, f"***@{host}", parts.path, parts.query, parts.fragment)
    )


def config_dict(config: TNSConfig) -> dict:
    return asdict(config)
