"""The TNS bulk-report API: post a report, ask for the TNS's per-entry answer, read both
defensively.

Protocol (the TNS API, and compatible servers):

1. ``POST <url>/api/bulk-report``, multipart ``api_key`` + ``data`` (the report JSON), header
   ``User-Agent: tns_marker{"tns_id": BOT_ID, "type": "bot", "name": BOT_NAME}``. A reply
   ``{"id_code": 200, "data": {"report_id": ...}}`` means the TNS *received* the report, not that it
   accepted its entries.
2. ``POST <url>/api/bulk-report-reply``, multipart ``api_key`` + ``report_id``. While the TNS is
   still processing the report it answers ``id_code`` 404 ("report not processed yet"); then
   ``{"id_code": 200, "data": {"feedback": {"at_report": [entry_0, entry_1, ...]}}}`` with, per
   entry of the report (a list in entry order, or a dict keyed by the entry index), messages: an
   accepted entry carries the object's TNS name (``{"100": {"objname": "2024abc", "message": "...",
   "message_id": 100}}``), a rejected one only error messages.

What a failure means for the report decides what may be retried (:func:`post_bulk_report`): a
connection that could not be opened means the TNS never saw the request (retried with backoff); a
429, or a 503 that says when to come back (``Retry-After``), is a refusal (retried after the wait,
bounded); anything after the request went out (dropped connection, timeout, a reply that is not
HTTP, a 5xx, a reply of an unexpected shape) leaves the outcome **unknown** and is never re-sent
blindly. Replies are parsed defensively: any shape not understood is "unknown", never an exception.
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import math
import ssl
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from earlyia.errors import ConfigError
from earlyia.report.tns import TNSCredentials, bulk_report_reply_url, bulk_report_url, redact_url

log = logging.getLogger(__name__)

#: Largest reply body read (bytes); a longer one is cut (and then is not valid JSON: "unknown").
MAX_REPLY_BYTES = 5_000_000
#: Entry outcomes.
ACCEPTED, REJECTED, UNKNOWN = "accepted", "rejected", "unknown"


class _NotSentError(Exception):
    """The connection could not be opened: the server cannot have seen the request."""


class _NoAnswerError(Exception):
    """The request may have reached the server, and no usable HTTP answer came back."""


@dataclass
class HTTPReply:
    status: int
    headers: Mapping[str, str]
    text: str


def _proxy_for(parts: urllib.parse.SplitResult) -> urllib.parse.SplitResult | None:
    """The proxy the environment gives for this URL (``https_proxy``/``http_proxy``,
    ``no_proxy``); never for loopback."""
    host = parts.hostname or ""
    if host in ("127.0.0.1", "localhost", "::1"):
        return None
    proxy = urllib.request.getproxies().get(parts.scheme)
    if not proxy or urllib.request.proxy_bypass(host):
        return None
    if "://" not in proxy:
        proxy = "http://" + proxy
    return urllib.parse.urlsplit(proxy)


def _basic(user: str | None, password: str | None) -> str:
    raw = f"{urllib.parse.unquote(user or '')}:{urllib.parse.unquote(password or '')}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


def http_post(url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> HTTPReply:
    """One POST, with the failure phase told apart: raises :class:`_NotSentError` when the
    connection (or the proxy tunnel) could not be opened, :class:`_NoAnswerError` for anything after
    the request started to go out.

    ``user:password@`` in the URL becomes HTTP basic authentication.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"TNS URL {redact_url(url)!r} is not an http(s)://host URL")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise ConfigError(f"TNS URL {redact_url(url)!r} has an invalid port") from exc
    headers = dict(headers)
    if parts.username is not None:
        headers["Authorization"] = _basic(parts.username, parts.password)
    target = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
    proxy = _proxy_for(parts)
    context = ssl.create_default_context() if parts.scheme == "https" else None
    if proxy is None:
        conn = (
            http.client.HTTPSConnection(parts.hostname, port, timeout=timeout, context=context)
            if context
            else http.client.HTTPConnection(parts.hostname, port, timeout=timeout)
        )
    else:
        proxy_headers = (
            {"Proxy-Authorization": _basic(proxy.username, proxy.password)}
            if proxy.username
            else None
        )
        pport = proxy.port or 80
        if context:
            conn = http.client.HTTPSConnection(
                proxy.hostname, pport, timeout=timeout, context=context
            )
            conn.set_tunnel(parts.hostname, port, headers=proxy_headers)
        else:
            conn = http.client.HTTPConnection(proxy.hostname, pport, timeout=timeout)
            target = urllib.parse.urlunsplit(
                (parts.scheme, f"{parts.hostname}:{port}", parts.path or "/", parts.query, "")
            )
            if proxy_headers:
                headers.update(proxy_headers)
    try:
        try:
            conn.connect()
        except OSError as exc:
            raise _NotSentError(_reason(exc)) from exc
        try:
            conn.request("POST", target, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read(MAX_REPLY_BYTES)
        except (OSError, http.client.HTTPException) as exc:
            raise _NoAnswerError(_reason(exc)) from exc
        return HTTPReply(
            resp.status,
            {k.lower(): v for k, v in resp.getheaders()},
            data.decode("utf-8", "replace"),
        )
    finally:
        conn.close()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, http.client.RemoteDisconnected):
        return "the server closed the connection without a reply"
    if isinstance(exc, http.client.BadStatusLine):
        return "the reply is not HTTP"
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}"[:200] if text else type(exc).__name__


def multipart(fields: Mapping[str, str]) -> tuple[bytes, str]:
    """A ``multipart/form-data`` body and its content type."""
    boundary = "earlyia-" + uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            + value.encode("utf-8")
            + b"\r\n"
        )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def retry_after_seconds(headers: Mapping[str, str], now: datetime | None = None) -> float | None:
    """Seconds to wait that the server asks for (``Retry-After``: seconds or an HTTP date; else
    the TNS's ``x-rate-limit-reset``), or None when absent or malformed (``nan``, negative,
    garbage)."""
    h = {k.lower(): v for k, v in headers.items()}
    for name in ("retry-after", "x-rate-limit-reset"):
        value = h.get(name)
        if value is None:
            continue
        text = str(value).strip()
        try:
            seconds = float(text)
        except ValueError:
            seconds = None
        if seconds is not None:
            if math.isfinite(seconds) and seconds >= 0:
                return seconds
            continue
        if name == "retry-after":
            try:
                when = parsedate_to_datetime(text)
            except (TypeError, ValueError, IndexError, OverflowError):
                continue
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
    return None


def _json(text: str):
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return None


def _id_code(reply: dict) -> int | None:
    try:
        return int(str(reply.get("id_code", 200)).strip())
    except ValueError:
        return None


def _server_message(text: str) -> str:
    reply = _json(text)
    if isinstance(reply, dict):
        msg = str(reply.get("id_message") or reply.get("message") or "").strip()
        data = reply.get("data")
        if data:
            msg = f"{msg} {json.dumps(data, default=str)[:300]}".strip()
        if msg:
            return msg[:400]
    return " ".join(text.split())[:200] or "(empty reply)"


# ----------------------------------------------------------------------------------------------
# bulk report
@dataclass
class PostResult:
    """What became of one bulk-report POST.

    ``outcome``: ``"received"`` (the TNS gave a report id), ``"rejected"`` (the TNS refused the
    request: nothing was reported), ``"not_sent"`` (the TNS never processed it: connection refused,
    rate limited until the attempts ran out), ``"unknown"`` (it may have been received: do not send
    it again blindly).
    """

    outcome: str
    report_id: str | None
    message: str
    attempts: int
    status: int | None = None


def post_bulk_report(
    report: dict,
    url: str,
    credentials: TNSCredentials,
    *,
    max_attempts: int = 5,
    retry_wait: float = 2.0,
    max_wait: float = 120.0,
    timeout: float = 60.0,
    sleep: Callable[[float], None] = time.sleep,
) -> PostResult:
    """POST ``report`` to ``<url>/api/bulk-report`` once, retrying only what cannot have been
    processed.

    Retried (at most ``max_attempts`` posts, each wait at most ``max_wait`` s): a connection that
    could not be opened (waits ``retry_wait * 2**k``), a 429 (the server's
    ``Retry-After``/``x-rate-limit-reset``, else the same backoff), a 503 with a valid
    ``Retry-After``. Never retried: anything after the request went out.
    """
    endpoint = bulk_report_url(url)
    shown = redact_url(endpoint)
    body, content_type = multipart({"api_key": credentials.api_key, "data": json.dumps(report)})
    headers = {
        "User-Agent": credentials.user_agent(),
        "Content-Type": content_type,
        "Accept": "application/json",
    }
    last, status = "", None
    for attempt in range(1, max_attempts + 1):
        wait = retry_wait * 2 ** (attempt - 1)
        try:
            reply = http_post(endpoint, body, headers, timeout)
        except _NotSentError as exc:
            last, status = f"connection failed: {exc}", None
        except _NoAnswerError as exc:
            return PostResult(
                UNKNOWN,
                None,
                f"{shown}: no usable reply after the report was sent ({exc}): the TNS may have "
                "received it",
                attempt,
            )
        else:
            status = reply.status
            if status == 200:
                return _read_post_reply(reply, shown, attempt)
            hinted = retry_after_seconds(reply.headers)
            if status == 429 or (status == 503 and hinted is not None):
                last = f"HTTP {status}: {_server_message(reply.text)}"
                wait = wait if hinted is None else hinted
            elif status == 503:
                return PostResult(
                    "not_sent",
                    None,
                    f"{shown}: the TNS is unavailable (HTTP 503: {_server_message(reply.text)}); "
                    "nothing was reported, run again later",
                    attempt,
                    status,
                )
            elif 300 <= status < 400:
                where = redact_url(reply.headers.get("location", "?"))
                return PostResult(
                    "not_sent",
                    None,
                    f"{shown}: redirected (HTTP {status}) to {where}: fix --tns-url",
                    attempt,
                    status,
                )
            elif 400 <= status < 500:
                return PostResult(
                    REJECTED,
                    None,
                    f"{shown}: report refused (HTTP {status}: {_server_message(reply.text)})",
                    attempt,
                    status,
                )
            else:
                return PostResult(
                    UNKNOWN,
                    None,
                    f"{shown}: HTTP {status} after the report was sent "
                    f"({_server_message(reply.text)}): the TNS may have received it",
                    attempt,
                    status,
                )
        if attempt == max_attempts:
            break
        wait = min(max(wait, 0.0), max_wait)
        log.info(
            "TNS %s: %s (attempt %d/%d); retrying in %.1f s",
            shown,
            last,
            attempt,
            max_attempts,
            wait,
        )
        sleep(wait)
    return PostResult(
        "not_sent",
        None,
        f"{shown}: gave up after {max_attempts} attempt(s) ({last}); nothing was reported",
        max_attempts,
        status,
    )


def _read_post_reply(reply: HTTPReply, shown: str, attempt: int) -> PostResult:
    body = _json(reply.text)
    if not isinstance(body, dict):
        kind = "not JSON" if body is None else f"a JSON {type(body).__name__}, not an object"
        return PostResult(
            UNKNOWN,
            None,
            f"{shown}: the reply to the report is {kind} ({' '.join(reply.text.split())[:120]!r}): "
            "the TNS may have received it",
            attempt,
            200,
        )
    code = _id_code(body)
    if code == 200:
        data = body.get("data")
        rid = data.get("report_id") if isinstance(data, dict) else None
        if isinstance(rid, (str, int)) and not isinstance(rid, bool) and str(rid).strip():
            log.info("TNS %s received the report (report id %s, attempt %d)", shown, rid, attempt)
            return PostResult("received", str(rid).strip(), "", attempt, 200)
        return PostResult(
            UNKNOWN,
            None,
            f"{shown}: the reply has no report id ({_server_message(reply.text)}): "
            "the TNS may have received it",
            attempt,
            200,
        )
    if code is not None and 400 <= code < 500 and code != 429:
        return PostResult(
            REJECTED,
            None,
            f"{shown}: report refused ({code}: {_server_message(reply.text)})",
            attempt,
            code,
        )
    return PostResult(
        UNKNOWN,
        None,
        f"{shown}: unexpected reply ({_server_message(reply.text)}): the TNS may have received it",
        attempt,
        200,
    )


# ----------------------------------------------------------------------------------------------
# bulk report reply
@dataclass
class EntryResult:
    """The TNS's answer about one entry of a report: ``state`` accepted (``tns_name`` set),
    rejected or unknown."""

    state: str
    tns_name: str | None = None
    message: str = ""


@dataclass
class ReplyResult:
    """``outcome``: ``"ready"`` (``entries`` holds one result per entry index), ``"processing"``
    (the TNS has not processed the report yet), ``"unavailable"`` (could not ask), ``"unknown"``
    (an answer not understood)."""

    outcome: str
    entries: dict[int, EntryResult] = field(default_factory=dict)
    message: str = ""


_NOT_READY_WORDS = (
    "not processed",
    "being processed",
    "processing",
    "in progress",
    "not ready",
    "not yet",
)


def parse_bulk_report_reply(status: int, text: str, n_entries: int) -> ReplyResult:
    """The TNS's bulk-report-reply (HTTP ``status`` and body) for a report of ``n_entries``
    entries; never raises."""
    body = _json(text)
    if status in (429,) or status >= 500:
        return ReplyResult("unavailable", message=f"HTTP {status}: {_server_message(text)}")
    if not isinstance(body, dict):
        kind = "not JSON" if body is None else f"a JSON {type(body).__name__}, not an object"
        return ReplyResult(
            UNKNOWN,
            message=f"the reply is {kind} (HTTP {status}: {' '.join(text.split())[:120]!r})",
        )
    code = _id_code(body)
    message = str(body.get("id_message") or "").strip()
    if code == 404 or (status == 404 and code is None):
        return ReplyResult("processing", message=message or "report not processed yet")
    data = body.get("data")
    feedback = data.get("feedback") if isinstance(data, dict) else None
    if isinstance(feedback, dict):
        feedback = feedback.get("at_report", None)
    per_entry: dict[int, object] = {}
    if isinstance(feedback, list):
        per_entry = dict(enumerate(feedback))
    elif isinstance(feedback, dict):
        for k, v in feedback.items():
            if str(k).strip().isdigit():
                per_entry[int(str(k).strip())] = v
    if code not in (200, 400) or status not in (200, 400):
        return ReplyResult(
            UNKNOWN,
            message=f"unexpected reply (HTTP {status}, id_code {body.get('id_code')!r}: "
            f"{_server_message(text)})",
        )
    if not per_entry:
        if any(w in message.lower() for w in _NOT_READY_WORDS):
            return ReplyResult("processing", message=message)
        if code == 400:  # the whole report refused, no word per entry
            why = _server_message(text)
            return ReplyResult(
                "ready", {i: EntryResult(REJECTED, None, why) for i in range(n_entries)}, why
            )
        return ReplyResult(
            UNKNOWN, message=f"the reply has no per-entry feedback ({_server_message(text)})"
        )
    entries = {
        i: entry_result(per_entry[i])
        if i in per_entry
        else EntryResult(UNKNOWN, None, "no feedback for this entry")
        for i in range(n_entries)
    }
    return ReplyResult("ready", entries, message)


def entry_result(feedback: object) -> EntryResult:
    """One entry's feedback: accepted when it names the TNS object (``objname``), rejected when
    it carries only messages, unknown otherwise."""
    names = [v.strip() for v in _find(feedback, ("objname",)) if isinstance(v, str) and v.strip()]
    messages = []
    for v in _find(feedback, ("message", "error", "errors", "error_message")):
        for m in v if isinstance(v, list) else [v]:
            if (
                isinstance(m, (str, int, float))
                and str(m).strip()
                and str(m).strip() not in messages
            ):
                messages.append(str(m).strip())
    text = "; ".join(messages)[:400]
    if names:
        return EntryResult(ACCEPTED, names[0], text)
    if messages:
        return EntryResult(REJECTED, None, text)
    return EntryResult(
        UNKNOWN, None, "feedback not understood: " + json.dumps(feedback, default=str)[:200]
    )


def _find(obj: object, keys: Iterable[str], depth: int = 0) -> list:
    """Every value under one of ``keys`` anywhere in nested dicts/lists (bounded depth)."""
    keys = tuple(keys)
    out: list = []
    if depth > 20:
        return out
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k in keys:
                out.append(v)
            if isinstance(v, (dict, list)):
                out.extend(_find(v, keys, depth + 1))
    elif isinstance(obj, list):
        for v in obj:
            out.extend(_find(v, keys, depth + 1))
    return out


def fetch_bulk_report_reply(
    report_id: str,
    url: str,
    credentials: TNSCredentials,
    n_entries: int,
    *,
    polls: int = 6,
    first_wait: float = 5.0,
    max_wait: float = 60.0,
    timeout: float = 60.0,
    wait_first: bool = True,
    sleep: Callable[[float], None] = time.sleep,
) -> ReplyResult:
    """Ask ``<url>/api/bulk-report-reply`` about ``report_id`` until the TNS has processed it, at
    most ``polls`` times, waiting ``first_wait`` s doubled after each answer "not processed yet"
    (capped at ``max_wait``; a server's ``Retry-After`` is honoured). Asking is read-only, so a
    failed ask is simply asked again."""
    endpoint = bulk_report_reply_url(url)
    shown = redact_url(endpoint)
    body, content_type = multipart({"api_key": credentials.api_key, "report_id": str(report_id)})
    headers = {
        "User-Agent": credentials.user_agent(),
        "Content-Type": content_type,
        "Accept": "application/json",
    }
    wait = first_wait
    last = ReplyResult("unavailable", message="not asked")
    for poll in range(max(1, polls)):
        if poll or wait_first:
            sleep(min(max(wait, 0.0), max_wait))
            wait = min(wait * 2, max_wait)
        try:
            reply = http_post(endpoint, body, headers, timeout)
        except (_NotSentError, _NoAnswerError) as exc:
            last = ReplyResult("unavailable", message=f"{shown}: {exc}")
            continue
        last = parse_bulk_report_reply(reply.status, reply.text, n_entries)
        if last.outcome in ("ready", UNKNOWN):
            return last
        hinted = retry_after_seconds(reply.headers)
        if hinted is not None:
            wait = hinted
    if last.outcome == "processing":
        last.message = (
            f"report {report_id} not processed after {max(1, polls)} request(s) ({last.message})"
        )
    return last
