"""Post the selected targets to Slack (a bot or an incoming webhook), a file or stdout: each once.

Every post (the nightly summary of a list, a target's message, a target's files) has an
idempotency key (list + night + object, see :func:`target_key`). It is recorded in the ``posts``
table of the database *before* the network call (``posting``, committed) and after it:

- ``posted``: the sink accepted it;
- ``failed``: the sink refused it (Slack ``ok: false``, HTTP 4xx): re-sent only with
  ``retry_failed``;
- ``pending``: nothing was sent (connection refused, rate limit or 5xx of a webhook after every
  retry): the next run sends it;
- ``unknown``: the request may have reached Slack but no valid answer came back (timeout after the
  request was sent, connection dropped, a reply that is not HTTP, a 5xx of the Web API). Such a post
  is never re-sent blindly. The Slack bot (:class:`~earlyia.followup.slackbot.SlackBotSink`) reads
  the channel's history since the first attempt, looking for the key in the message metadata (or its
  ``earlyia ref`` marker in the text): found -> ``posted``; re-sent only when the history call
  succeeded and says the message is absent. A webhook has no read API: the post stays ``unknown``,
  is reported, and is re-sent only when the user asks (``retry_unknown``) after checking the
  channel.

A process interrupted during a call (Ctrl-C) records ``unknown``; one killed outright leaves
``posting``, which a later run treats as ``unknown`` once it is older than ``in_flight_timeout``
(younger, it may still be in flight in another process and is left alone). Two notifiers running at
once never send the same key: a post is claimed by a compare-and-set on its ledger row.

Every alert-controlled string is escaped for Slack mrkdwn (``&``, ``<``, ``>``) before it reaches a
message, so an object id or a class cannot mention ``<!channel>`` or forge a link. Secrets (webhook
URL, bot token) never appear in messages, errors or the database.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import math
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import quote

import numpy as np

from earlyia.errors import ConfigError, RemoteError
from earlyia.followup.config import PORTAL_URL, RetryPolicy, check_url, slack_webhook_url
from earlyia.followup.db import FollowupDB, utcnow

LIST_TITLES = {
    "al": "Active-learning target (the classifier is unsure: a spectrum teaches it most)",
    "early": "Likely early SN Ia (high score, young)",
}
LIST_NAMES = {"al": "active-learning", "early": "early SN Ia"}
#: 4xx statuses meaning the webhook itself is wrong: stop instead of failing every target.
FATAL_STATUSES = (401, 403, 404, 410)
#: ``event_type`` of the message metadata that carries a post's idempotency key.
EVENT_TYPE = "earlyia_followup_post"
#: A ``posting`` row younger than this (seconds) may still be in flight in another process.
IN_FLIGHT_TIMEOUT = 900.0
_MJD0 = datetime(1858, 11, 17, tzinfo=UTC)


class DeliveryUnknownError(RemoteError):
    """The request may have reached the sink, but no valid answer came back: do not re-send
    blindly."""

    def __init__(self, message: str, *, status: int | None = None):
        super().__init__(message, status=status, permanent=False)


class SinkBrokenError(RemoteError):
    """The sink refuses everything (revoked webhook or token, unknown channel): stop the run."""

    def __init__(self, message: str, *, status: int | None = None):
        super().__init__(message, status=status, permanent=True)


# -- text -----------------------------------------------------------------------------------------
def escape(value) -> str:
    """``value`` as literal text in Slack mrkdwn: ``&`` -> ``&amp;``, ``<`` -> ``&lt;``, ``>`` ->
    ``&gt;``."""
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _fmt(value, spec: str, missing: str = "n/a") -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return missing
    return missing if math.isnan(v) else format(v, spec)


def night_of(mjd, fallback: str | None = None) -> str:
    """UTC date (``YYYY-MM-DD``) of an MJD, else the date of the ISO timestamp ``fallback``."""
    try:
        v = float(mjd)
    except (TypeError, ValueError):
        v = math.nan
    if math.isfinite(v) and 0 < v < 100000:
        return (_MJD0 + timedelta(days=v)).date().isoformat()
    return (fallback or utcnow())[:10]


def target_key(list_: str, night: str, object_id: str) -> str:
    """Idempotency key of a target's message: one per (list, night, object)."""
    return f"earlyia/{list_}/{night}/{object_id}"


def summary_key(list_: str, night: str, selection_id: int) -> str:
    return f"earlyia/{list_}/{night}/summary-{selection_id}"


def ref_of(key: str) -> str:
    """Short hex digest of a key: the ``earlyia ref`` marker shown in a message (safe characters
    only)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]


def marker_of(key: str) -> str:
    return f"earlyia ref {ref_of(key)}"


@dataclass
class Attachment:
    """A file posted with a target (light-curve PNG, cutouts)."""

    filename: str
    title: str
    data: bytes


@dataclass
class Post:
    """One message to deliver exactly once."""

    key: str
    kind: str  # 'summary' | 'target' | 'files'
    list: str | None
    message: dict
    object_id: str | None = None
    request_id: int | None = None
    selection_id: int | None = None
    files: list[Attachment] = field(default_factory=list)

    @property
    def marker(self) -> str:
        return marker_of(self.key)

    @property
    def label(self) -> str:
        if self.kind == "summary":
            return f"summary of the {LIST_NAMES.get(self.list or '', self.list)} list"
        return f"{self.object_id} (files)" if self.kind == "files" else str(self.object_id)


def format_message(target: dict, key: str | None = None) -> dict:
    """Slack ``text`` + ``blocks`` for one target (a row of :func:`pending_targets`); every field
    escaped."""
    oid = str(target["object_id"])
    e_oid = escape(oid)
    link = f"{PORTAL_URL}{quote(oid, safe='')}"
    title = LIST_TITLES.get(target.get("list", "al"), escape(target.get("list")))
    classification = escape(target.get("classification") or "Unknown")
    ra, dec = _fmt(target.get("ra"), ".5f"), _fmt(target.get("dec"), "+.5f")
    score = _fmt(target.get("score"), ".3f")
    days = _fmt(target.get("days_since_first"), ".1f")
    mag = _fmt(target.get("last_mag"), ".2f")
    band = escape(target.get("last_band") or "")
    model = escape(str(target.get("model_version") or "n/a")[:12])
    text = (
        f"{e_oid} ({link}) RA {ra} Dec {dec} score {score} class {classification} {days} d since "
        "first detection"
    )
    fields = [
        f"*RA, Dec (deg)*\n{ra}, {dec}",
        f"*Early SN Ia score*\n{score}",
        f"*Current classification*\n{classification}",
        f"*Days since first detection*\n{days}",
        f"*Last magnitude*\n{mag} {band}".rstrip(),
        f"*Model*\n{model}",
    ]
    blocks = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*<{link}|{e_oid}>*  {title}"}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields]},
    ]
    if target.get("image_url"):
        blocks.append(
            {
                "type": "image",
                "image_url": target["image_url"],
                "alt_text": f"light curve of {e_oid}",
            }
        )
    if key is not None:
        text = f"{text} [{marker_of(key)}]"
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": marker_of(key)}]})
    return {"text": text, "blocks": blocks}


def format_summary(info: dict, key: str | None = None) -> dict:
    """The nightly summary posted first in a list's channel: night, counts, model, strategy."""
    name = LIST_NAMES.get(info["list"], escape(info["list"]))
    model = escape(str(info.get("model_version") or "n/a")[:12])
    strategy = escape(info.get("strategy") or "n/a")
    n = int(info.get("n_targets") or 0)
    scored = ""
    if info.get("n_objects") is not None:
        scored = (
            f" among {int(info['n_objects']):,} scored objects "
            f"({int(info.get('n_alerts') or 0):,} alerts)"
        )
    chosen = f"chosen by {strategy}" if info["list"] == "al" else "score > threshold, young"
    text = f"earlyia, night {info['night']}: {n} {name} target{'s' * (n != 1)}, model {model}"
    body = (
        f"*earlyia follow-up, night {info['night']}*\n*{n}* {name} target{'s' * (n != 1)} "
        f"({chosen}){scored}\nModel `{model}`"
    )
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": body}}]
    if key is not None:
        text = f"{text} [{marker_of(key)}]"
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": marker_of(key)}]})
    return {"text": text, "blocks": blocks}


# -- sinks -----------------------------------------------------------------------------------------
class StdoutSink:
    """Print each message's text (for a dry run or a cron log)."""

    name = channel = "stdout"
    can_verify = False
    uploads_files = False

    def __init__(self, stream=None):
        self.stream = stream

    def destination(self, list_: str | None) -> str | None:
        return None

    def send(self, post: Post) -> str:
        stream = self.stream or sys.stdout
        print(post.message["text"], file=stream, flush=True)
        return f"stdout:{post.object_id or post.key}"


class FileSink:
    """Append one JSON line per message to a file (fsynced, so a posted status is never ahead of
    it)."""

    can_verify = False
    uploads_files = False

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.name = self.channel = f"file:{self.path}"
        if not self.path.parent.exists():
            raise ConfigError(
                f"--sink file:{self.path}: directory {self.path.parent} does not exist"
            )

    def destination(self, list_: str | None) -> str | None:
        return None

    def send(self, post: Post) -> str:
        line = json.dumps(
            {"object_id": post.object_id, "key": post.key, **post.message}, sort_keys=True
        )
        try:
            with open(self.path, "a", encoding="utf-8") as fh:
                offset = fh.tell()
                fh.write(line + "\n")
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            raise RemoteError(
                f"cannot append to {self.path}: {exc.strerror}", permanent=False
            ) from exc
        return f"{self.path.name}@{offset}"


class SlackSink:
    """POST JSON to a Slack incoming webhook, with retries where nothing can have been posted.

    HTTP 429 (honouring ``Retry-After``) and 5xx are Slack saying it did not post: retried with
    backoff; so are errors before the request was sent (connection refused, DNS). A timeout, a
    dropped connection or a non-HTTP reply *after* the request was sent raise
    :class:`DeliveryUnknownError` at once: a webhook cannot be asked whether the message arrived, so
    it is not re-sent.

    Args:
        url: the webhook URL (default: ``$EARLYIA_SLACK_WEBHOOK`` read now). Never shown.
        retry: backoff policy (tests pass tiny delays).
        sleep: the sleeping function (tests record the delays instead of waiting).
    """

    name = channel = "slack"
    can_verify = False
    uploads_files = False

    def __init__(
        self,
        url: str | None = None,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self._url = (
            check_url(url, "the Slack webhook URL") if url is not None else slack_webhook_url()
        )
        self.retry = retry or RetryPolicy()
        self.sleep = sleep
        self.log: list[tuple[int | None, float]] = []  # (status, delay) of every retried attempt

    def __repr__(self) -> str:  # never leak the secret in a traceback or log line
        return "SlackSink(url=<hidden>)"

    def destination(self, list_: str | None) -> str | None:
        return None

    def _post_once(self, body: bytes) -> tuple[int, str]:
        req = urllib.request.Request(
            self._url,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json; charset=utf-8"},
        )
        with urllib.request.urlopen(req, timeout=self.retry.timeout) as resp:
            return resp.status, resp.read(4096).decode("utf-8", "replace")

    def send(self, post: Post) -> str:
        body = json.dumps(post.message).encode("utf-8")
        what = post.label
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
                    retry_after = _retry_after(
                        exc.headers.get("Retry-After") if exc.headers else None
                    )
                    last = RemoteError(
                        f"Slack webhook answered HTTP {status} {detail[:100]!r} for {what}",
                        status=status,
                        permanent=False,
                    )
                elif status in FATAL_STATUSES:
                    raise SinkBrokenError(
                        f"Slack webhook refused the message for {what}: HTTP {status} "
                        f"{detail[:200]!r}",
                        status=status,
                    ) from None
                else:
                    raise RemoteError(
                        f"Slack webhook refused the message for {what}: HTTP {status} "
                        f"{detail[:200]!r}",
                        status=status,
                        permanent=True,
                    ) from None
            except urllib.error.URLError as exc:
                # urllib wraps only errors of connecting and sending: the request did not get
                # through.
                reason = getattr(exc, "reason", exc)
                last = RemoteError(
                    f"Slack webhook unreachable for {what}: {type(reason).__name__}",
                    status=None,
                    permanent=False,
                )
            except (TimeoutError, ConnectionError, http.client.HTTPException, OSError) as exc:
                raise DeliveryUnknownError(
                    "Slack webhook gave no valid answer after the request was sent for "
                    f"{what} ({_why(exc)})"
                ) from None
            if attempt == self.retry.max_attempts:
                break
            delay = (
                self.retry.delay(attempt)
                if retry_after is None
                else min(self.retry.max_delay, retry_after)
            )
            self.log.append((last.status, delay))
            self.sleep(delay)
        assert last is not None
        raise RemoteError(
            f"{last} (gave up after {self.retry.max_attempts} attempts)",
            status=last.status,
            permanent=False,
        )


#: The webhook sink under its descriptive name.
WebhookSink = SlackSink


def _why(exc: BaseException) -> str:
    """What went wrong after a request was sent, in words (never the exception text: it may hold
    a URL)."""
    if isinstance(exc, TimeoutError):
        return "timed out waiting for the answer"
    if isinstance(exc, http.client.RemoteDisconnected | ConnectionError):
        return "connection closed without an answer"
    if isinstance(exc, http.client.BadStatusLine | http.client.HTTPException):
        return "the reply was not HTTP"
    return type(exc).__name__


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
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


# -- light-curve images (optional) ---------------------------------------------------------------
def lightcurve_png(lc, object_id: str) -> bytes | None:
    """A small PNG of one object's light curve (detections with errors, upper limits as
    triangles)."""
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
            ax.errorbar(
                lc.mjd[s:e][det],
                lc.flux[s:e][det],
                lc.flux_err[s:e][det],
                fmt="o",
                ms=4,
                label=name,
            )
        if lim.any():
            ax.plot(
                lc.mjd[s:e][lim],
                5 * lc.flux_err[s:e][lim],
                "v",
                alpha=0.5,
                color=ax.lines[-1].get_color() if det.any() else None,
            )
    ax.set_xlabel("MJD")
    ax.set_ylabel("flux (zp 27.5)")
    ax.set_title(str(object_id).replace("$", r"\$"))
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return buf.getvalue()


class ImageUploader:
    """Render a target's light curve and POST the PNG to a configured upload URL (webhook messages).

    The upload service answers JSON ``{"url": ...}``: the public address put in the Slack message.
    A failed render or upload never blocks the message: the target is posted without image.
    """

    def __init__(self, lc, upload_url: str, retry: RetryPolicy | None = None):
        self.lc = lc
        self._url = check_url(upload_url, "--upload-url")
        self.retry = retry or RetryPolicy()
        self.errors: list[str] = []

    def __repr__(self) -> str:
        return "ImageUploader(upload_url=<hidden>)"

    def __call__(self, target: dict) -> str | None:
        oid = str(target["object_id"])
        png = lightcurve_png(self.lc, oid)
        if png is None:
            return None
        req = urllib.request.Request(
            self._url,
            data=png,
            method="POST",
            headers={"Content-Type": "image/png", "X-Object-Id": quote(oid, safe="")},
        )
        try:
            with urllib.request.urlopen(req, timeout=self.retry.timeout) as resp:
                url = json.loads(resp.read(65536).decode("utf-8")).get("url")
        except (
            urllib.error.URLError,
            OSError,
            ValueError,
            AttributeError,
            http.client.HTTPException,
        ) as exc:
            self.errors.append(f"{oid}: light-curve upload failed ({type(exc).__name__})")
            return None
        return str(url) if url else None


# -- the command
# -------------------------------------------------------------------------------------
@dataclass
class NotifyReport:
    posted: list[str] = field(default_factory=list)  # targets whose message went out in this run
    found: list[str] = field(
        default_factory=list
    )  # outcome was unknown; found in the channel: posted, not re-sent
    failed: list[tuple[str, str]] = field(default_factory=list)
    deferred: list[tuple[str, str]] = field(
        default_factory=list
    )  # nothing sent: the next run sends it
    unknown: list[tuple[str, str]] = field(
        default_factory=list
    )  # outcome unknown in this run: not re-sent
    still_unknown: list[tuple[str, str]] = field(
        default_factory=list
    )  # unknown since an earlier run
    skipped: list[str] = field(default_factory=list)  # claimed by another process meanwhile
    summaries: list[str] = field(default_factory=list)  # lists whose nightly summary was posted
    files: list[str] = field(default_factory=list)  # targets whose files were posted
    warnings: list[str] = field(default_factory=list)
    stopped: str | None = None

    @property
    def ok(self) -> bool:
        return not self.failed and not self.deferred and not self.unknown and self.stopped is None


_PENDING_SQL = """
SELECT r.id AS request_id, r.object_id, r.list, r.status, r.model_version, r.strategy,
       r.selection_id,
       r.post_key, r.updated_at, s.created_at AS selected_at,
       c.rank, c.alert_id, c.mjd, c.score, c.ra, c.dec, c.days_since_first, c.last_mag, c.last_band,
       c.cdsxmatch, c.classification
FROM requests r
JOIN candidates c
  ON c.selection_id = r.selection_id AND c.list = r.list AND c.object_id = r.object_id
JOIN selections s ON s.id = r.selection_id
WHERE (r.status IN ({statuses}) {files}) {lists}
ORDER BY r.selection_id, CASE r.list WHEN 'al' THEN 0 ELSE 1 END, c.rank
"""


def pending_targets(
    db: FollowupDB,
    *,
    lists: tuple[str, ...] = ("al", "early"),
    retry_failed: bool = False,
    unknown: bool = False,
    files: bool = False,
) -> list[dict]:
    """Requests with something left to post: ``selected`` ones (+ ``failed`` with ``retry_failed``;
    + ``unknown`` and ``posting`` with ``unknown``; + ``posted`` ones whose files are not, with
      ``files``)."""
    statuses = (
        ["selected"]
        + (["failed"] if retry_failed else [])
        + (["unknown", "posting"] if unknown else [])
    )
    files_sql = (
        (
            "OR (r.status = 'posted' AND EXISTS (SELECT 1 FROM posts p WHERE p.request_id = r.id "
            "AND p.kind = 'files' AND p.status != 'posted'))"
        )
        if files
        else ""
    )
    sql = _PENDING_SQL.format(
        statuses=",".join("?" * len(statuses)),
        files=files_sql,
        lists=f"AND r.list IN ({','.join('?' * len(lists))})" if lists else "",
    )
    return [dict(r) for r in db.query(sql, (*statuses, *lists))]


def _summary_info(db: FollowupDB, selection_id: int, list_: str) -> dict:
    row = db.query(
        """SELECT s.created_at, s.model_version, s.strategy, f.n_alerts, f.n_objects,
                  (SELECT COUNT(*) FROM candidates c
                   WHERE c.selection_id = s.id AND c.list = ?) AS n_targets,
                  (SELECT MAX(c.mjd) FROM candidates c WHERE c.selection_id = s.id) AS max_mjd
           FROM selections s LEFT JOIN score_files f ON f.id = s.score_file_id WHERE s.id = ?""",
        (list_, selection_id),
    )[0]
    info = dict(row)
    info.update(
        list=list_,
        selection_id=selection_id,
        night=night_of(info.pop("max_mjd"), info["created_at"]),
    )
    return info


class _ClaimLostError(Exception):
    """Internal: roll back a claim that lost a race."""


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


class _Notifier:
    """One run of :func:`notify`: the ledger state machine around ``sink.send`` /
    ``sink.upload``."""

    def __init__(
        self,
        db,
        sink,
        *,
        retry_failed,
        retry_unknown,
        pace,
        verify_after,
        max_sends,
        in_flight_timeout,
        sleep,
        clock,
    ):
        self.db, self.sink = db, sink
        self.retry_failed, self.retry_unknown = retry_failed, retry_unknown
        self.pace, self.verify_after, self.max_sends = pace, verify_after, max_sends
        self.in_flight_timeout = in_flight_timeout
        self.sleep, self.clock = sleep, clock
        self.report = NotifyReport()
        self.sink_name = getattr(sink, "name", getattr(sink, "channel", "sink"))
        self.can_verify = bool(getattr(sink, "can_verify", False))
        self._last_send: float | None = None

    # -- ledger rows ----------------------------------------------------------------------------
    def _row(self, key: str):
        rows = self.db.query("SELECT * FROM posts WHERE key = ?", (key,))
        return rows[0] if rows else None

    def _dest(self, post: Post) -> str | None:
        dest = getattr(self.sink, "destination", None)
        return dest(post.list) if dest is not None else None

    def _claim(self, post: Post, row, request_status: str | None) -> bool:
        """``posting``, committed before the call; False when another process got there first."""
        now = utcnow()
        dest = self._dest(post)
        try:
            with self.db.transaction() as con:
                if row is None:
                    cur = con.execute(
                        "INSERT INTO posts (key, kind, request_id, selection_id, list, sink, "
                        "destination, status, created_at, "
                        "started_at, attempts, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, "
                        "'posting', ?, ?, 1, ?) "
                        "ON CONFLICT(key) DO NOTHING",
                        (
                            post.key,
                            post.kind,
                            post.request_id,
                            post.selection_id,
                            post.list,
                            self.sink_name,
                            dest,
                            now,
                            now,
                            now,
                        ),
                    )
                else:
                    cur = con.execute(
                        "UPDATE posts SET status = 'posting', sink = ?, destination = ?, "
                        "started_at = ?, attempts = attempts + 1, "
                        "error = NULL, updated_at = ? WHERE key = ? AND status = ? AND "
                        "attempts = ?",
                        (self.sink_name, dest, now, now, post.key, row["status"], row["attempts"]),
                    )
                if cur.rowcount != 1:
                    raise _ClaimLostError
                if post.kind == "target":
                    cur = con.execute(
                        "UPDATE requests SET status = 'posting', channel = ?, post_key = ?, "
                        "attempts = attempts + 1, "
                        "updated_at = ? WHERE id = ? AND status = ?",
                        (
                            self.sink_name if dest is None else f"{self.sink_name}:{dest}",
                            post.key,
                            now,
                            post.request_id,
                            request_status,
                        ),
                    )
                    if cur.rowcount != 1:
                        raise _ClaimLostError
        except _ClaimLostError:
            return False
        return True

    def _finish(
        self,
        post: Post,
        status: str,
        *,
        message_id: str | None = None,
        error: str | None = None,
        expect: str = "posting",
        files_follow: bool = False,
    ) -> bool:
        now = utcnow()
        with self.db.transaction() as con:
            cur = con.execute(
                "UPDATE posts SET status = ?, message_id = COALESCE(?, message_id), error = "
                "?, updated_at = ? "
                "WHERE key = ? AND status = ?",
                (status, message_id, error, now, post.key, expect),
            )
            if cur.rowcount != 1:
                return False
            if post.kind == "target":
                con.execute(
                    "UPDATE requests SET status = ?, message_id = COALESCE(?, message_id), "
                    "error = ?, updated_at = ? "
                    "WHERE id = ?",
                    (
                        "selected" if status == "pending" else status,
                        message_id,
                        error,
                        now,
                        post.request_id,
                    ),
                )
                if status == "posted" and files_follow:
                    con.execute(
                        "INSERT INTO posts (key, kind, request_id, selection_id, list, sink, "
                        "destination, status, created_at, "
                        "attempts, updated_at) VALUES (?, 'files', ?, ?, ?, ?, ?, 'pending', "
                        "?, 0, ?) ON CONFLICT(key) DO NOTHING",
                        (
                            files_key(post.key),
                            post.request_id,
                            post.selection_id,
                            post.list,
                            self.sink_name,
                            self._dest(post),
                            now,
                            now,
                        ),
                    )
        return True

    def _record_file_ids(self, post: Post, ids: list[str]) -> None:
        with self.db.transaction() as con:
            con.execute(
                "UPDATE posts SET file_ids = ?, updated_at = ? WHERE key = ?",
                (json.dumps(ids), utcnow(), post.key),
            )

    # -- the state machine ----------------------------------------------------------------------
    def _may_retry_unknown(self, post: Post) -> bool:
        if self.retry_unknown is True:
            return True
        if not self.retry_unknown:
            return False
        return post.object_id is not None and str(post.object_id) in self.retry_unknown

    def _paced_send(self, post: Post) -> str:
        if self._last_send is not None and self.pace > 0:
            wait = self.pace - (self.clock() - self._last_send)
            if wait > 0:
                self.sleep(wait)
        try:
            if post.kind == "files":
                return self.sink.upload(
                    post, on_uploaded=lambda ids: self._record_file_ids(post, ids)
                )
            return self.sink.send(post)
        finally:
            self._last_send = self.clock()

    def _verify(self, post: Post, row) -> str:
        """'found' (marked posted), 'absent' (history read to the end), or 'unchecked' (left
        unknown)."""
        started = row["started_at"] or row["created_at"]
        wait = self.verify_after - (time.time() - _epoch(started))
        if wait > 0:
            self.sleep(wait)
        file_ids = json.loads(row["file_ids"]) if row["file_ids"] else []
        try:
            ts = self.sink.find(post, since=row["created_at"], file_ids=file_ids)
        except RemoteError as exc:
            why = (
                f"outcome unknown and the channel could not be checked ({exc}); checked again "
                "next run"
            )
            self._unknown(post, why, new=True)
            return "unchecked"
        if ts is None:
            return "absent"
        marked = self._finish(
            post,
            "posted",
            message_id=str(ts),
            error=None,
            expect=row["status"],
            files_follow=bool(post.files),
        )
        if marked and post.kind == "target":
            self.report.found.append(str(post.object_id))
        return "found"

    def _unknown(self, post: Post, why: str, *, new: bool) -> None:
        (self.report.unknown if new else self.report.still_unknown).append((post.label, why))

    def _webhook_unknown_note(self, post: Post) -> str:
        return (
            f"outcome unknown: not re-sent. Check the channel for '{post.marker}'; if it is "
            "missing, "
            f"run notify with --retry-unknown {post.object_id or ''}".rstrip()
        )

    def deliver(self, post: Post, request_status: str | None = None) -> str:
        """Send ``post`` unless its key is already posted; returns its final state in this run."""
        row = self._row(post.key)
        prev = (
            row["status"]
            if row is not None
            else request_status
            if request_status in ("posting", "unknown")
            else None
        )
        if prev == "posted":
            return "posted"
        if prev == "failed" and not self.retry_failed:
            return "failed"
        if prev in ("posting", "unknown"):
            started = (row["started_at"] or row["created_at"]) if row is not None else None
            if (
                prev == "posting"
                and started
                and time.time() - _epoch(started) < self.in_flight_timeout
            ):
                self.report.skipped.append(post.label)
                return "skipped"
            if prev == "posting":  # interrupted for good (killed): record what we know
                if row is not None:
                    self._finish(
                        post, "unknown", error="interrupted during the call", expect="posting"
                    )
                    row = self._row(post.key)
                elif post.kind == "target":  # left by an earlier earlyia, before the ledger existed
                    with self.db.transaction() as con:
                        con.execute(
                            "UPDATE requests SET status = 'unknown', error = 'interrupted "
                            "during the call', "
                            "updated_at = ? WHERE id = ? AND status = 'posting'",
                            (utcnow(), post.request_id),
                        )
                request_status = "unknown"
            same_place = (
                row is not None
                and row["sink"] == self.sink_name
                and row["destination"] == self._dest(post)
            )
            if self.can_verify and same_place:
                state = self._verify(post, row)
                if state != "absent":
                    return "posted" if state == "found" else "unknown"
            elif not self._may_retry_unknown(post):
                self._unknown(
                    post,
                    self._webhook_unknown_note(post)
                    if not self.can_verify
                    else "outcome unknown (sent through another sink or channel): not re-sent; "
                    "use --retry-unknown after checking",
                    new=False,
                )
                return "unknown"
        sends = 0
        while True:
            if not self._claim(post, row, request_status):
                self.report.skipped.append(post.label)
                return "skipped"
            request_status = "posting"
            sends += 1
            try:
                message_id = self._paced_send(post)
            except DeliveryUnknownError as exc:
                self._finish(post, "unknown", error=str(exc))
                row = self._row(post.key)
                if not self.can_verify:
                    self._unknown(post, f"{exc}; {self._webhook_unknown_note(post)}", new=True)
                    return "unknown"
                state = self._verify(post, row)
                if state == "found":
                    return "posted"
                if state == "unchecked":
                    return "unknown"
                if sends >= self.max_sends:
                    self._unknown(
                        post,
                        f"{exc}; not in the channel after {sends} attempts: checked again next run",
                        new=True,
                    )
                    return "unknown"
                request_status = "unknown"
                continue
            except RemoteError as exc:
                if exc.permanent:
                    self._finish(post, "failed", error=str(exc))
                    self.report.failed.append((post.label, str(exc)))
                    if isinstance(exc, SinkBrokenError) or exc.status in FATAL_STATUSES:
                        self.report.stopped = (
                            f"{exc}; check the sink's configuration: remaining targets left pending"
                        )
                    return "failed"
                self._finish(post, "pending", error=str(exc))
                self.report.deferred.append((post.label, str(exc)))
                self.report.stopped = (
                    "the sink keeps failing; remaining targets left pending, re-run notify later"
                )
                return "pending"
            except (KeyboardInterrupt, SystemExit):
                self._finish(post, "unknown", error="interrupted during the call")
                raise
            self._finish(
                post, "posted", message_id=message_id, error=None, files_follow=bool(post.files)
            )
            return "sent"


def files_key(key: str) -> str:
    return f"{key}/files"


def notify(
    db: FollowupDB,
    sink,
    *,
    lists: tuple[str, ...] = ("al", "early"),
    retry_failed: bool = False,
    retry_unknown: bool | Collection[str] = False,
    limit: int | None = None,
    image_for: Callable[[dict], str | None] | None = None,
    attachments_for: Callable[[dict], list[Attachment]] | None = None,
    summary: bool = False,
    pace: float = 0.0,
    verify_after: float = 30.0,
    max_sends: int = 2,
    in_flight_timeout: float = IN_FLIGHT_TIMEOUT,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> NotifyReport:
    """Deliver every pending target through ``sink``, each exactly once (see the module docstring).

    Args:
        lists: which lists to post (``al``, ``early``). retry_failed: also re-send posts the sink
        refused before. retry_unknown: re-send posts whose outcome is unknown and cannot be checked
        (webhook): ``True``
            for all, or a collection of object ids (after checking the channel by hand).
        image_for: target -> public image URL (webhook messages; :class:`ImageUploader`).
        attachments_for: target -> files posted after its message (sinks that upload files).
        summary: post each list's nightly summary first in its channel.
        pace: seconds between two posts (Slack allows about one message per second per channel).
        verify_after: seconds after an unknown outcome before the channel's history is read.
        max_sends: at most this many sends of one key in a run (re-sends happen only after the
            history said the message is absent).
    """
    run = _Notifier(
        db,
        sink,
        retry_failed=retry_failed,
        retry_unknown=retry_unknown,
        pace=pace,
        verify_after=verify_after,
        max_sends=max(1, max_sends),
        in_flight_timeout=in_flight_timeout,
        sleep=sleep,
        clock=clock,
    )
    report = run.report
    uploads = bool(getattr(sink, "uploads_files", False)) and attachments_for is not None
    targets = pending_targets(
        db, lists=lists, retry_failed=retry_failed, unknown=True, files=uploads
    )
    if limit is not None:
        targets = targets[:limit]
    prepare = getattr(attachments_for, "prepare", None) if uploads else None
    if prepare is not None:
        prepare(targets)
    groups: dict[tuple[int, str], list[dict]] = {}
    for t in targets:
        groups.setdefault((t["selection_id"], t["list"]), []).append(t)
    for (selection_id, list_), group in groups.items():
        if report.stopped:
            break
        if summary and any(t["status"] != "posted" for t in group):
            info = _summary_info(db, selection_id, list_)
            key = summary_key(list_, info["night"], selection_id)
            sp = Post(
                key=key,
                kind="summary",
                list=list_,
                message=format_summary(info, key),
                selection_id=selection_id,
            )
            if run.deliver(sp) == "sent":
                report.summaries.append(list_)
        for target in group:
            if report.stopped:
                break
            _deliver_target(
                run,
                target,
                image_for=image_for,
                attachments_for=attachments_for if uploads else None,
            )
    return report


def _deliver_target(run: _Notifier, target: dict, *, image_for, attachments_for) -> None:
    report = run.report
    oid = str(target["object_id"])
    key = target["post_key"] or target_key(
        target["list"], night_of(target["mjd"], target["selected_at"]), oid
    )
    files: list[Attachment] = []
    if attachments_for is not None:
        files_row = run._row(files_key(key))
        if files_row is None or files_row["status"] != "posted":
            try:
                files = list(attachments_for(target) or [])
            except (
                Exception
            ) as exc:  # isolation boundary: a file is optional, never block the message for it
                report.warnings.append(f"{oid}: files not attached ({type(exc).__name__}: {exc})")
    post = Post(
        key=key,
        kind="target",
        list=target["list"],
        message={},
        object_id=oid,
        request_id=target["request_id"],
        selection_id=target["selection_id"],
        files=files,
    )
    if target["status"] != "posted":
        if image_for is not None:
            try:
                target["image_url"] = image_for(target)
            except (
                Exception
            ) as exc:  # isolation boundary: an image is optional, never block the message for it
                report.warnings.append(
                    f"{oid}: light-curve image failed ({type(exc).__name__}: {exc})"
                )
        post.message = format_message(target, key)
        state = run.deliver(post, request_status=target["status"])
        if state == "sent":
            report.posted.append(oid)
        elif state != "posted":
            return
    if not files:
        if target["status"] == "posted" and attachments_for is not None:
            report.warnings.append(
                f"{oid}: files still to post, but none could be built in this run"
            )
        return
    what = [
        name
        for name, tag in (("light curve", "_lightcurve"), ("cutouts", "_cutout"))
        if any(tag in f.filename for f in files)
    ]
    text = f"{escape(oid)}: {' and '.join(what) or 'files'}"
    fp = Post(
        key=files_key(key),
        kind="files",
        list=target["list"],
        message={"text": f"{text} [{marker_of(files_key(key))}]"},
        object_id=oid,
        request_id=target["request_id"],
        selection_id=target["selection_id"],
        files=files,
    )
    if run.deliver(fp) == "sent":
        report.files.append(oid)
