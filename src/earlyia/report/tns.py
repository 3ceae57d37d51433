"""Transient Name Server (TNS) AT reports: the bulk-report JSON, human tables, and sending.

The JSON follows the TNS bulk-report format (``{"at_report": {"0": {...}, "1": {...}}}``): position,
reporting group and discovery data source, discovery date = the FIRST detection (with its
magnitude and filter), the last non-detection before it (or an archival statement when none is
known), and remarks with our score. Sending is a multipart POST of ``api_key`` and ``data`` to
``<url>/api/bulk-report`` with the bot's ``User-Agent: tns_marker{...}`` header; bot id, name and API
key come from the environment only and are never logged, printed or written.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from earlyia import __version__
from earlyia.errors import ConfigError, Problem, RemoteError

log = logging.getLogger(__name__)

#: Default TNS values per survey: instrument id, filter ids per band name, exposure time (s),
#: discovery data source group id. ZTF values are the ones ZTF/AMPEL bots use (ZTF-Cam 196, ztf-g/r/i
#: 110/111/112, source group 48 = ZTF). LSST values are from the Lasair TNS notes: check them on the
#: TNS sandbox before a real report.
SURVEY_TNS = {
    "ZTF": {"instrument": "196", "filters": {"g": "110", "r": "111", "i": "112"}, "exptime": "30", "data_source": "48"},
    "LSST": {
        "instrument": "287",
        "filters": {"u": "160", "g": "161", "r": "162", "i": "163", "z": "164", "Y": "165"},
        "exptime": "30",
        "data_source": "165",
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
        reporting_group_id: the TNS group the report is made on behalf of.
        discovery_data_source_id: the TNS group of the data (default: the survey's, e.g. 48 for ZTF).
        reporter: the reporter line (names, "on behalf of ...").
        survey: selects instrument and filter ids from :data:`SURVEY_TNS`.
        at_type: TNS AT type ("1" = PSN, possible supernova).
        position_error_arcsec: RA/Dec uncertainty written in the report.
    """

    reporting_group_id: str
    reporter: str
    discovery_data_source_id: str | None = None
    survey: str = "ZTF"
    at_type: str = "1"
    position_error_arcsec: float = 0.5
    flux_units: str = "1"  # TNS code for AB magnitudes
    extra_remarks: str = ""

    def survey_values(self) -> dict:
        if self.survey not in SURVEY_TNS:
            raise ConfigError(f"no TNS instrument/filter ids known for survey {self.survey!r}; known: {sorted(SURVEY_TNS)}")
        return SURVEY_TNS[self.survey]

    def validate(self) -> None:
        if not str(self.reporting_group_id).strip():
            raise ConfigError("TNS reporting group id is empty: pass --reporting-group-id or set EARLYIA_TNS_REPORTING_GROUP_ID")
        if not str(self.reporter).strip():
            raise ConfigError("TNS reporter is empty: pass --reporter or set EARLYIA_TNS_REPORTER")
        self.survey_values()


def mjd_to_tns_datetime(mjd: float) -> str:
    """``YYYY-MM-DD HH:MM:SS.sss`` (UTC) of an MJD (the discovery/observation date format TNS takes)."""
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


def remarks_for(row: pd.Series, model_id: str | None = None, extra: str = "") -> str:
    """One line: our score (3 decimals), the other classifiers when used, the alert that triggered."""
    parts = [f"Early SN Ia candidate (earlyia {__version__}): score {float(row['score']):.3f}"]
    if model_id:
        parts[0] += f" (model {model_id})"
    snn = [f"{c} {float(row[c]):.3f}" for c in ("snn_snia_vs_nonia", "snn_sn_vs_all") if c in row and _finite(row[c])]
    if snn and bool(row.get("snn_used", True)):
        parts.append("SuperNNova " + ", ".join(snn))
    trig = f"alert {row['alert_id']}"
    if "n_detections" in row and _finite(row["n_detections"]):
        trig += f" with {int(row['n_detections'])} detections"
    parts.append(trig)
    if extra:
        parts.append(extra)
    return "; ".join(parts) + "."


def at_report_entry(row: pd.Series, config: TNSConfig, *, model_id: str | None = None) -> dict:
    """The TNS AT-report dict of one candidate row (see :data:`earlyia.report.candidates.CANDIDATE_COLUMNS`)."""
    sv = config.survey_values()
    filters = sv["filters"]
    err = _num(config.position_error_arcsec, ".2f")
    first_band = str(row.get("first_det_band", ""))
    if not _finite(row.get("first_det_mjd")) or not _finite(row.get("first_det_mag")):
        raise ConfigError("no first detection (date and magnitude) to report")
    entry = {
        "ra": {"value": _num(row["ra"], ".6f"), "error": err, "units": "arcsec"},
        "dec": {"value": _num(row["dec"], "+.6f"), "error": err, "units": "arcsec"},
        "reporting_group_id": str(config.reporting_group_id),
        "discovery_data_source_id": str(config.discovery_data_source_id or sv["data_source"]),
        "reporter": config.reporter,
        "discovery_datetime": mjd_to_tns_datetime(row["first_det_mjd"]),
        "at_type": str(config.at_type),
        "internal_name": str(row["object_id"]),
        "remarks": remarks_for(row, model_id, config.extra_remarks),
    }
    nd_band = str(row.get("last_nondet_band", ""))
    if _finite(row.get("last_nondet_mjd")) and _finite(row.get("last_nondet_limit_mag")) and nd_band in filters:
        entry["non_detection"] = {
            "obsdate": mjd_to_tns_datetime(row["last_nondet_mjd"]),
            "limiting_flux": _num(row["last_nondet_limit_mag"], ".3f"),
            "flux_units": config.flux_units,
            "filter_value": filters[nd_band],
            "instrument_value": sv["instrument"],
            "exptime": sv["exptime"],
            "observer": "Robot",
            "comments": "last non-detection before the first detection",
        }
    else:
        why = "no non-detection before the first detection in the alert history"
        if _finite(row.get("last_nondet_mjd")):
            why = f"last non-detection at {mjd_to_tns_datetime(row['last_nondet_mjd'])} UTC, limiting magnitude unknown"
        entry["non_detection"] = {"archiveid": "0", "archival_remarks": why}
    if first_band not in filters:
        raise ConfigError(f"first-detection band {first_band!r} has no TNS filter id for {config.survey}")
    entry["photometry"] = {
        "photometry_group": {
            "0": {
                "obsdate": mjd_to_tns_datetime(row["first_det_mjd"]),
                "flux": _num(row["first_det_mag"], ".3f"),
                "flux_error": _num(row.get("first_det_mag_err"), ".3f"),
                "limiting_flux": "",
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
    """The bulk-report JSON, the objects it holds (in order) and the candidates left out, with why."""

    report: dict
    object_ids: list[str]
    alert_ids: list[str]
    problems: list[Problem]


def build_bulk_report(candidates: pd.DataFrame, config: TNSConfig, *, model_id: str | None = None, validate: bool = True) -> BulkReport:
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


# ---------------------------------------------------------------------------------------------- tables
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
            out[title] = [mjd_to_tns_datetime(m)[:16] if _finite(m) else "" for m in c.get("first_det_mjd", pd.Series(np.nan, c.index))]
        elif key == "last_nondet":
            out[title] = [mjd_to_tns_datetime(m)[:16] if _finite(m) else "" for m in c.get("last_nondet_mjd", pd.Series(np.nan, c.index))]
        elif key in c.columns:
            v = c[key]
            if key in ("score", "snn_snia_vs_nonia", "snn_sn_vs_all"):
                v = v.map(lambda x: f"{x:.3f}" if _finite(x) else "")
            elif key in ("ra", "dec"):
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


# ---------------------------------------------------------------------------------------------- sending
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
            raise ConfigError(f"TNS bot credentials missing: set the environment variable(s) {', '.join(missing)}")
        return cls(env[ENV_BOT_ID].strip(), env[ENV_BOT_NAME].strip(), env[ENV_API_KEY].strip())

    def user_agent(self) -> str:
        marker = {"tns_id": int(self.bot_id) if self.bot_id.isdigit() else self.bot_id, "type": "bot", "name": self.bot_name}
        return "tns_marker" + json.dumps(marker)


def bulk_report_url(url: str) -> str:
    """``<url>/api/bulk-report`` unless ``url`` already names the endpoint."""
    url = url.rstrip("/")
    if url.endswith("/bulk-report"):
        return url
    if url.endswith("/api"):
        return url + "/bulk-report"
    return url + "/api/bulk-report"


def _multipart(fields: dict[str, str]) -> tuple[bytes, str]:
    boundary = "earlyia-" + uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode() + value.encode("utf-8") + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


@dataclass
class SendResult:
    report_id: str | None
    attempts: int
    reply: dict


def send_bulk_report(
    report: dict,
    url: str,
    credentials: TNSCredentials,
    *,
    max_attempts: int = 5,
    backoff: float = 2.0,
    max_wait: float = 120.0,
    timeout: float = 60.0,
    sleep: Callable[[float], None] = time.sleep,
) -> SendResult:
    """POST ``report`` to a TNS-compatible ``/api/bulk-report``; retry on 429 and 5xx with backoff.

    A 429 waits for the server's ``x-rate-limit-reset`` / ``Retry-After`` seconds when given
    (capped at ``max_wait``), else ``backoff * 2**attempt``. A 4xx other than 429, or a reply whose
    ``id_code`` is not 200, raises :class:`RemoteError` (``permanent=True``) with the server's
    message; exhausted retries raise it with ``permanent=False``.
    """
    endpoint = bulk_report_url(url)
    opener = _opener(endpoint)
    body, content_type = _multipart({"api_key": credentials.api_key, "data": json.dumps(report)})
    headers = {"User-Agent": credentials.user_agent(), "Content-Type": content_type, "Accept": "application/json"}
    last = ""
    for attempt in range(1, max_attempts + 1):
        req = urllib.request.Request(endpoint, data=body, headers=headers, method="POST")
        try:
            with opener.open(req, timeout=timeout) as resp:
                status, text, resp_headers = resp.status, resp.read().decode("utf-8", "replace"), resp.headers
        except urllib.error.HTTPError as exc:
            status, text, resp_headers = exc.code, exc.read().decode("utf-8", "replace"), exc.headers
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            status, text, resp_headers = None, str(getattr(exc, "reason", exc)), {}
        if status == 200:
            try:
                reply = json.loads(text)
            except json.JSONDecodeError as exc:
                raise RemoteError(f"{endpoint}: the reply is not JSON: {text[:200]!r}", status=status) from exc
            code = reply.get("id_code", 200)
            if int(code) != 200:
                raise RemoteError(f"{endpoint}: report rejected: {code} {reply.get('id_message', '')}".strip(), status=int(code))
            data = reply.get("data") or {}
            report_id = data.get("report_id") if isinstance(data, dict) else None
            log.info("TNS bulk report accepted by %s (report id %s, attempt %d)", endpoint, report_id, attempt)
            return SendResult(None if report_id is None else str(report_id), attempt, reply)
        retriable = status is None or status == 429 or status >= 500
        last = f"HTTP {status}: {_message(text)}" if status is not None else f"connection failed: {text}"
        if not retriable:
            raise RemoteError(f"{endpoint}: report rejected ({last})", status=status, permanent=True)
        if attempt == max_attempts:
            break
        wait = backoff * 2 ** (attempt - 1)
        hinted = None
        if resp_headers is not None and len(resp_headers):
            hinted = resp_headers.get("x-rate-limit-reset") or resp_headers.get("Retry-After")
        if status == 429 and hinted is not None:
            with contextlib.suppress(ValueError):
                wait = float(hinted)
        wait = min(max(wait, 0.0), max_wait)
        log.warning("TNS %s (attempt %d/%d); retrying in %.1f s", last, attempt, max_attempts, wait)
        sleep(wait)
    raise RemoteError(f"{endpoint}: gave up after {max_attempts} attempts ({last})", status=status, permanent=False)


def _opener(url: str) -> urllib.request.OpenerDirector:
    """Loopback URLs (test servers) never go through an HTTP proxy from the environment."""
    host = urllib.parse.urlsplit(url).hostname or ""
    if host in ("127.0.0.1", "localhost", "::1"):
        return urllib.request.build_opener(urllib.request.ProxyHandler({}))
    return urllib.request.build_opener()


def _message(text: str) -> str:
    try:
        reply = json.loads(text)
    except json.JSONDecodeError:
        return text[:200]
    if isinstance(reply, dict):
        msg = reply.get("id_message") or reply.get("message") or ""
        data = reply.get("data")
        if data:
            msg = f"{msg} {json.dumps(data)[:300]}".strip()
        return msg or text[:200]
    return text[:200]


def config_dict(config: TNSConfig) -> dict:
    return asdict(config)
