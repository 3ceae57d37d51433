"""Post the selected targets to Slack (or a file, or stdout), each exactly once.

Delivery is *at most once* per target: a request is claimed (``selected -> posting``) in its
own committed transaction before the HTTP call and marked ``posted`` right after it succeeds,
so two concurrent ``notify`` runs never post the same target and a re-run never reposts. If
the process dies between the call and the final commit the request stays ``posting``;
``--resend-interrupted`` re-sends those (at-least-once for that rare case, on request).
HTTP 429 (honouring ``Retry-After``), 5xx and network errors are retried with exponential
backoff; other 4xx are permanent: the request is marked ``failed`` and the command exits
non-zero. The webhook URL is a secret: it never appears in messages, errors or the database.
"""

from __future__ import annotations

import json
import math
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC
from email.utils import parsedate_to_datetime
from pathlib import Path

import numpy as np

from earlyia.errors import ConfigError, RemoteError
from earlyia.followup.config import PORTAL_URL, RetryPolicy, slack_webhook_url
from earlyia.followup.db import FollowupDB, utcnow

LIST_TITLES = {
    "al": "Active-learning target (the classifier is unsure: a spectrum teaches it most)",
    "early": "Likely early SN Ia (high score, young)",
}
#: 4xx statuses meaning the webhook itself is wrong: stop instead of failing every target.
FATAL_STATUSES = (401, 403, 404, 410)


def _fmt(value, spec: str, missing: str = "n/a") -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return missing
    return missing if math.isnan(v) else format(v, spec)


def format_message(target: dict) -> dict:
    """Slack ``text`` + ``blocks`` for one target (a row of :func:`pending_targets`)."""
    oid = str(target["object_id"])
    link = f"{PORTAL_URL}{oid}"
    title = LIST_TITLES.get(target.get("list", "al"), str(target.get("list")))
    classification = target.get("classification") or "Unknown"
    ra, dec = _fmt(target.get("ra"), ".5f"), _fmt(target.get("dec"), "+.5f")
    score = _fmt(target.get("score"), ".3f")
    days = _fmt(target.get("days_since_first"), ".1f")
    mag = _fmt(target.get("last_mag"), ".2f")
    band = target.get("last_band") or ""
    text = f"{oid} ({link}) RA {ra} Dec {dec} score {score} class {classification} {days} d since first detection"
    fields = [
        f"*RA, Dec (deg)*\n{ra}, {dec}",
        f"*Early SN Ia score*\n{score}",
        f"*Current classification*\n{classification}",
        f"*Days since first detection*\n{days}",
        f"*Last magnitude*\n{mag} {band}".rstrip(),
        f"*Model*\n{str(target.get('model_version') or 'n/a')[:12]}",
    ]
    blocks = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*<{link}|{oid}>*  {title}"}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields]},
    ]
    if target.get("image_url"):
        blocks.append({"type": "image", "image_url": target["image_url"], "alt_text": f"light curve of {oid}"})
    return {"text": text, "blocks": blocks}


# -- sinks -----------------------------------------------------------------------------------------
class StdoutSink:
    """Print each message's text (for a dry run or a cron log)."""

    channel = "stdout"

    def __init__(self, stream=None):
        self.stream = stream

    def send(self, message: dict, object_id: str) -> str:
        stream = self.stream or sys.stdout
        print(message["text"], file=stream, flush=True)
        return f"stdout:{object_id}"


class FileSink:
    """Append one JSON line per message to a file (fsynced, so a posted status is never ahead of it)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.channel = f"file:{self.path}"
        if not self.path.parent.exists():
            raise ConfigError(f"--sink file:{self.path}: directory {self.path.parent} does not exist")

    def send(self, message: dict, object_id: str) -> str:
        line = json.dumps({"object_id": object_id, **message}, sort_keys=True)
        with open(self.path, "a", encoding="utf-8") as fh:
            offset = fh.tell()
            fh.write(line + "\n")
            fh.flush()
            import os

            os.fsync(fh.fileno())
        return f"{self.path.name}@{offset}"


class SlackSink:
    """POST JSON to a Slack incoming webhook with retries.

    Args:
        url: the webhook URL (default: ``$EARLYIA_SLACK_WEBHOOK`` read now). Never shown.
        retry: backoff policy (tests pass tiny delays).
        sleep: the sleeping function (tests record the delays instead of waiting).
    """

    channel = "slack"

    def __init__(self, url: str | None = None, retry: RetryPolicy | None = None, sleep: Callable[[float], None] = time.sleep):
        self._url = url if url is not None else slack_webhook_url()
        self.retry = retry or RetryPolicy()
        self.sleep = sleep
        self.log: list[tuple[int | None, float]] = []  # (status, delay) of every retried attempt

    def __repr__(self) -> str:  # never leak the secret in a traceback or log line
        return "SlackSink(url=<hidden>)"

    def _post_once(self, body: bytes) -> tuple[int, str]:
        req = urllib.request.Request(self._url, data=body, method="POST", headers={"Content-Type": "application/json; charset=utf-8"})
        with urllib.request.urlopen(req, timeout=self.retry.timeout) as resp:
            return resp.status, resp.read(4096).decode("utf-8", "replace")

    def send(self, message: dict, object_id: str) -> str:
        body = json.dumps(message).encode("utf-8")
        last: RemoteError | None = None
        for attempt in range(1, self.retry.max_attempts + 1):
            retry_after = None
            try:
                status, text = self._post_once(body)
                return f"slack:{status}:{text.strip()[:40]}"
            except urllib.error.HTTPError as exc:
                status = exc.code
                detail = exc.read(300).decode("utf-8", "replace").strip() if exc.fp else ""
                exc.close()
                if status == 429 or status >= 500:
                    retry_after = _retry_after(exc.headers.get("Retry-After") if exc.headers else None)
                    last = RemoteError(f"Slack webhook answered HTTP {status} {detail[:100]!r} for {object_id}",
                                       status=status, permanent=False)
                else:
                    raise RemoteError(
                        f"Slack webhook refused the message for {object_id}: HTTP {status} {detail[:200]!r}", status=status, permanent=True
                    ) from None
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                last = RemoteError(f"Slack webhook unreachable for {object_id}: {type(reason).__name__}", status=None, permanent=False)
            if attempt == self.retry.max_attempts:
                break
            delay = self.retry.delay(attempt) if retry_after is None else min(self.retry.max_delay, retry_after)
            self.log.append((last.status, delay))
            self.sleep(delay)
        assert last is not None
        raise RemoteError(f"{last} (gave up after {self.retry.max_attempts} attempts)", status=last.status, permanent=False)


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    from datetime import datetime

    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def make_sink(spec: str, *, retry: RetryPolicy | None = None, sleep: Callable[[float], None] = time.sleep):
    """``slack`` | ``stdout`` | ``file:PATH``."""
    if spec == "slack":
        return SlackSink(retry=retry, sleep=sleep)
    if spec == "stdout":
        return StdoutSink()
    if spec.startswith("file:") and len(spec) > 5:
        return FileSink(spec[5:])
    raise ConfigError(f"--sink {spec!r}: expected slack, stdout or file:PATH")


# -- light-curve images (optional) ---------------------------------------------------------------
def lightcurve_png(lc, object_id: str) -> bytes | None:
    """A small PNG of one object's light curve (detections with errors, upper limits as triangles)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ids = lc.objects["object_id"].astype(str).to_numpy()
    hit = np.flatnonzero(ids == str(object_id))
    if not len(hit):
        return None
    s, e = int(lc.offsets[hit[0]]), int(lc.offsets[hit[0] + 1])
    fig, ax = plt.subplots(figsize=(5, 3))
    for code, name in enumerate(lc.bands):
        m = lc.band[s:e] == code
        det = m & lc.detected[s:e]
        lim = m & ~lc.detected[s:e]
        if det.any():
            ax.errorbar(lc.mjd[s:e][det], lc.flux[s:e][det], lc.flux_err[s:e][det], fmt="o", ms=4, label=name)
        if lim.any():
            ax.plot(lc.mjd[s:e][lim], 5 * lc.flux_err[s:e][lim], "v", alpha=0.5, color=ax.lines[-1].get_color() if det.any() else None)
    ax.set_xlabel("MJD")
    ax.set_ylabel("flux (zp 27.5)")
    ax.set_title(str(object_id))
    ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return buf.getvalue()


class ImageUploader:
    """Render a target's light curve and POST the PNG to a configured upload URL.

    The upload service answers JSON ``{"url": ...}``: the public address put in the Slack message.
    A failed render or upload never blocks the message: the target is posted without image.
    """

    def __init__(self, lc, upload_url: str, retry: RetryPolicy | None = None):
        if not upload_url.startswith(("https://", "http://")):
            raise ConfigError("--upload-url must be an http(s) URL")
        self.lc = lc
        self._url = upload_url
        self.retry = retry or RetryPolicy()
        self.errors: list[str] = []

    def __repr__(self) -> str:
        return "ImageUploader(upload_url=<hidden>)"

    def __call__(self, target: dict) -> str | None:
        oid = str(target["object_id"])
        png = lightcurve_png(self.lc, oid)
        if png is None:
            return None
        req = urllib.request.Request(self._url, data=png, method="POST",
                                     headers={"Content-Type": "image/png", "X-Object-Id": oid})
        try:
            with urllib.request.urlopen(req, timeout=self.retry.timeout) as resp:
                url = json.loads(resp.read(65536).decode("utf-8")).get("url")
        except (urllib.error.URLError, OSError, ValueError, AttributeError) as exc:
            self.errors.append(f"{oid}: light-curve upload failed ({type(exc).__name__})")
            return None
        return str(url) if url else None


# -- the command -------------------------------------------------------------------------------------
@dataclass
class NotifyReport:
    posted: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    deferred: list[tuple[str, str]] = field(default_factory=list)  # transient failure: still 'selected'
    skipped: list[str] = field(default_factory=list)  # claimed by another process meanwhile
    stopped: str | None = None

    @property
    def ok(self) -> bool:
        return not self.failed and not self.deferred and self.stopped is None


_PENDING_SQL = """
SELECT r.id AS request_id, r.object_id, r.list, r.status, r.model_version, r.strategy, r.selection_id,
       c.rank, c.alert_id, c.mjd, c.score, c.ra, c.dec, c.days_since_first, c.last_mag, c.last_band,
       c.cdsxmatch, c.classification
FROM requests r JOIN candidates c ON c.selection_id = r.selection_id AND c.list = r.list AND c.object_id = r.object_id
WHERE r.status IN ({statuses}) {lists}
ORDER BY r.selection_id, CASE r.list WHEN 'al' THEN 0 ELSE 1 END, c.rank
"""


def pending_targets(db: FollowupDB, *, lists: tuple[str, ...] = ("al", "early"), retry_failed: bool = False,
                    resend_interrupted: bool = False) -> list[dict]:
    statuses = ["selected"] + (["failed"] if retry_failed else []) + (["posting"] if resend_interrupted else [])
    sql = _PENDING_SQL.format(
        statuses=",".join("?" * len(statuses)), lists=f"AND r.list IN ({','.join('?' * len(lists))})" if lists else ""
    )
    return [dict(r) for r in db.query(sql, (*statuses, *lists))]


def notify(db: FollowupDB, sink, *, lists: tuple[str, ...] = ("al", "early"), retry_failed: bool = False,
           resend_interrupted: bool = False, limit: int | None = None,
           image_for: Callable[[dict], str | None] | None = None) -> NotifyReport:
    """Send every pending request through ``sink``; each status change is its own transaction."""
    report = NotifyReport()
    eligible = ("selected",) + (("failed",) if retry_failed else ()) + (("posting",) if resend_interrupted else ())
    targets = pending_targets(db, lists=lists, retry_failed=retry_failed, resend_interrupted=resend_interrupted)
    if limit is not None:
        targets = targets[:limit]
    for target in targets:
        rid, oid = target["request_id"], target["object_id"]
        with db.transaction() as con:  # claim: nobody else will post this one
            cur = con.execute(
                f"UPDATE requests SET status = 'posting', channel = ?, attempts = attempts + 1, updated_at = ? "
                f"WHERE id = ? AND status IN ({','.join('?' * len(eligible))})",
                (sink.channel, utcnow(), rid, *eligible),
            )
            claimed = cur.rowcount == 1
        if not claimed:
            report.skipped.append(oid)
            continue
        try:
            if image_for is not None:
                try:
                    target["image_url"] = image_for(target)
                except Exception as exc:  # an image is optional: never block the message for it
                    errors = getattr(image_for, "errors", None)
                    if errors is not None:
                        errors.append(f"{oid}: light-curve image failed ({type(exc).__name__}: {exc})")
            message_id = sink.send(format_message(target), oid)
        except RemoteError as exc:
            if exc.permanent:
                with db.transaction() as con:
                    con.execute("UPDATE requests SET status = 'failed', error = ?, updated_at = ? WHERE id = ?", (str(exc), utcnow(), rid))
                report.failed.append((oid, str(exc)))
                if exc.status in FATAL_STATUSES:
                    report.stopped = f"the webhook answered HTTP {exc.status}: check EARLYIA_SLACK_WEBHOOK; remaining targets left pending"
                    break
            else:
                with db.transaction() as con:
                    con.execute("UPDATE requests SET status = 'selected', error = ?, updated_at = ? WHERE id = ?",
                                (str(exc), utcnow(), rid))
                report.deferred.append((oid, str(exc)))
                report.stopped = "the webhook keeps failing; remaining targets left pending, re-run notify later"
                break
            continue
        # (An interruption during send() propagates and leaves the request 'posting': we cannot
        # know whether the message went out, so it is not re-sent automatically.)
        with db.transaction() as con:
            con.execute(
                "UPDATE requests SET status = 'posted', message_id = ?, error = NULL, updated_at = ? WHERE id = ?",
                (message_id, utcnow(), rid),
            )
        report.posted.append(oid)
    return report
