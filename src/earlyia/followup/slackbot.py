"""A Slack bot sink (Web API through the official ``slack_sdk``), like Fink's active-learning bot.

One bot token (``$EARLYIA_SLACK_BOT_TOKEN``, never printed or stored), one channel per list
(active-learning, early SN Ia), ``chat.postMessage`` with the post's idempotency key in the message
``metadata``, files with Slack's current upload API (``files.getUploadURLExternal``, an upload to
the URL it returns, ``files.completeUploadExternal``: what ``files_upload_v2`` does, in steps so the
file ids are recorded before the files are shared) and ``conversations.history`` to find out
whether a post whose outcome is unknown reached the channel.

Retries (``slack_sdk.http_retry``): a 429 is retried after its ``Retry-After`` for every call (Slack
did not process the request). Connection errors are retried only where that is safe: for reads and
uploads (no visible effect) any of them; for the calls that post (``chat.postMessage``,
``files.completeUploadExternal``) only those raised before the request was sent (``URLError``:
connection refused, DNS, TLS). An error after it was sent is
:class:`~earlyia.followup.notify.DeliveryUnknownError`.

Scopes the Slack app needs: ``chat:write``, ``files:write``, ``channels:history`` (public channels)
and ``groups:history`` (private ones); the bot must be a member of both channels.
"""

from __future__ import annotations

import http.client
import logging
import os
import re
import urllib.error
import urllib.request
from collections.abc import Callable

from earlyia.errors import ConfigError, RemoteError
from earlyia.followup.config import RetryPolicy
from earlyia.followup.notify import (
    EVENT_TYPE,
    DeliveryUnknownError,
    Post,
    SinkBrokenError,
    _epoch,
    _why,
    check_url,
)

TOKEN_ENV = "EARLYIA_SLACK_BOT_TOKEN"
API_URL_ENV = "EARLYIA_SLACK_API_URL"
CHANNEL_ENVS = {"al": "EARLYIA_SLACK_AL_CHANNEL", "early": "EARLYIA_SLACK_EARLY_CHANNEL"}
CHANNEL_OPTIONS = {"al": "--al-channel", "early": "--early-channel"}
DEFAULT_API_URL = "https://slack.com/api/"
_TOKEN_RE = re.compile(r"xox[bp]-[A-Za-z0-9-]{8,250}")
_CHANNEL_RE = re.compile(r"[CG][A-Z0-9]{6,20}")
_ERROR_CODE_RE = re.compile(r"[a-z0-9_]{2,80}")
#: Slack error codes meaning the token or a channel is wrong: stop the run.
FATAL_ERRORS = frozenset(
    {
        "invalid_auth",
        "not_authed",
        "account_inactive",
        "token_revoked",
        "token_expired",
        "no_permission",
        "missing_scope",
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "team_access_not_granted",
        "restricted_action",
        "ekm_access_denied",
        "org_login_required",
        "access_denied",
    }
)
#: Slack error codes after which a posting call may or may not have taken effect.
UNKNOWN_ERRORS = frozenset(
    {"fatal_error", "internal_error", "request_timeout", "service_unavailable"}
)
#: Messages per ``conversations.history`` page, and pages read before giving up a check.
HISTORY_PAGE = 200
HISTORY_PAGES = 10
#: The history is searched from this many seconds before a post's first attempt (clock skew).
HISTORY_MARGIN = 120.0


def bot_token(env: dict | None = None) -> str:
    """The bot token from ``$EARLYIA_SLACK_BOT_TOKEN`` (read now, checked, never echoed)."""
    env = os.environ if env is None else env
    token = env.get(TOKEN_ENV, "").strip()
    if not token:
        raise ConfigError(
            f"set {TOKEN_ENV} to the Slack bot token (xoxb-...), or use another --sink"
        )
    return check_token(token)


def check_token(token: str) -> str:
    if not isinstance(token, str) or not _TOKEN_RE.fullmatch(token):
        raise ConfigError(
            f"{TOKEN_ENV} does not look like a Slack bot token (xoxb- then letters, digits and "
            "dashes; value not shown); copy it again from the app's OAuth page"
        )
    return token


def check_channel(list_: str, channel: str) -> str:
    if not _CHANNEL_RE.fullmatch(channel or ""):
        raise ConfigError(
            f"{CHANNEL_OPTIONS.get(list_, list_)} {channel!r}: expected a Slack channel ID "
            "such as C0123ABCDEF "
            "(channel details > About, at the bottom), not a channel name"
        )
    return channel


def _quiet_logger() -> logging.Logger:
    """A logger of our own for ``slack_sdk``: its error lines would duplicate ours (we report
    every failure)."""
    logger = logging.Logger("earlyia.slack_sdk", level=logging.CRITICAL)
    logger.addHandler(logging.NullHandler())
    return logger


def _error_code(exc) -> tuple[int | None, str | None]:
    """(HTTP status, Slack error code) of a ``SlackApiError``; code None when the reply was not
    Slack JSON."""
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    data = getattr(response, "data", None)
    code = data.get("error") if isinstance(data, dict) else None
    if not isinstance(code, str) or not _ERROR_CODE_RE.fullmatch(code):
        code = None
    return status, code


class SlackBotSink:
    """Post with a bot token: ``chat.postMessage`` to one channel per list, files, history checks.

    Args:
        token: bot token (default ``$EARLYIA_SLACK_BOT_TOKEN``). Never shown.
        channels: list -> channel ID (``{"al": "C...", "early": "C..."}``; default the environment's
            ``EARLYIA_SLACK_AL_CHANNEL`` / ``EARLYIA_SLACK_EARLY_CHANNEL``).
        base_url: the Web API root (default ``$EARLYIA_SLACK_API_URL``, else
        ``https://slack.com/api/``). retry: ``max_attempts`` bounds the retries of a call,
        ``timeout`` is the HTTP timeout,
            ``base_delay`` the wait before retrying a connection error.
    """

    name = "slack-bot"
    can_verify = True
    uploads_files = True

    def __init__(
        self,
        token: str | None = None,
        channels: dict[str, str | None] | None = None,
        *,
        base_url: str | None = None,
        retry: RetryPolicy | None = None,
        history_pages: int = HISTORY_PAGES,
    ):
        from slack_sdk import WebClient
        from slack_sdk.http_retry.builtin_handlers import (
            ConnectionErrorRetryHandler,
            RateLimitErrorRetryHandler,
            ServerErrorRetryHandler,
        )
        from slack_sdk.http_retry.builtin_interval_calculators import BackoffRetryIntervalCalculator

        self._channels: dict[str, str] = {}
        token = check_token(token) if token is not None else bot_token()
        self.retry = retry or RetryPolicy()
        for list_, env in CHANNEL_ENVS.items():
            value = (channels or {}).get(list_) or os.environ.get(env, "").strip() or None
            if value:
                self._channels[list_] = check_channel(list_, value)
        base = base_url or os.environ.get(API_URL_ENV, "").strip() or DEFAULT_API_URL
        base = check_url(base, f"{API_URL_ENV} / base_url")
        base = base if base.endswith("/") else base + "/"
        self.history_pages = history_pages
        retries = max(0, self.retry.max_attempts - 1)
        backoff = BackoffRetryIntervalCalculator(backoff_factor=self.retry.base_delay / 2)
        common = {
            "token": token,
            "base_url": base,
            "timeout": float(self.retry.timeout),
            "logger": _quiet_logger(),
        }
        # Posting calls: 429 and errors raised before the request was sent (URLError) only.
        self._write = WebClient(
            **common,
            retry_handlers=[
                RateLimitErrorRetryHandler(max_retry_count=retries),
                ConnectionErrorRetryHandler(
                    max_retry_count=retries,
                    interval_calculator=backoff,
                    error_types=[urllib.error.URLError],
                ),
            ],
        )
        # Reads and uploads: no visible effect, any connection error or 5xx may be retried.
        self._read = WebClient(
            **common,
            retry_handlers=[
                RateLimitErrorRetryHandler(max_retry_count=retries),
                ConnectionErrorRetryHandler(max_retry_count=retries, interval_calculator=backoff),
                ServerErrorRetryHandler(max_retry_count=retries, interval_calculator=backoff),
            ],
        )
        self.channel = "slack-bot " + ", ".join(
            f"{k}:{v}" for k, v in sorted(self._channels.items())
        )

    def __repr__(self) -> str:  # never leak the token in a traceback or log line
        return f"SlackBotSink(token=<hidden>, channels={self._channels})"

    def destination(self, list_: str | None) -> str:
        channel = self._channels.get(list_ or "")
        if channel is None:
            option = CHANNEL_OPTIONS.get(list_ or "", "--al-channel/--early-channel")
            raise ConfigError(
                f"{option} (or ${CHANNEL_ENVS.get(list_ or '', 'EARLYIA_SLACK_AL_CHANNEL')}) "
                "is needed "
                f"to post the {list_} list with --sink slack-bot"
            )
        return channel

    # -- posting -----------------------------------------------------------------------------------
    def _posting_error(self, exc: BaseException, what: str, method: str) -> RemoteError:
        """Classify an error of a call that posts: not sent (pending), refused (failed) or
        unknown."""
        from slack_sdk.errors import SlackApiError, SlackClientError

        if isinstance(exc, SlackApiError):
            status, code = _error_code(exc)
            if status == 429 or code == "ratelimited":
                return RemoteError(
                    f"Slack {method} rate-limited {what} after every retry",
                    status=429,
                    permanent=False,
                )
            if status is not None and status >= 500:
                return DeliveryUnknownError(
                    f"Slack {method} answered HTTP {status} for {what}", status=status
                )
            if code is None and status is not None and 400 <= status < 500:
                return SinkBrokenError(
                    f"Slack {method} answered HTTP {status}, not a Slack API reply, for {what}: "
                    f"check {API_URL_ENV}",
                    status=status,
                )
            if code is None:
                return DeliveryUnknownError(
                    f"Slack {method} answered something that is not a Slack API reply for {what} "
                    f"(HTTP {status})",
                    status=status,
                )
            if code in UNKNOWN_ERRORS:
                return DeliveryUnknownError(
                    f"Slack {method} answered {code} for {what}", status=status
                )
            if code in FATAL_ERRORS:
                return SinkBrokenError(f"Slack {method} refused {what}: {code}", status=status)
            return RemoteError(
                f"Slack {method} refused {what}: {code}", status=status, permanent=True
            )
        if isinstance(exc, urllib.error.URLError):
            reason = getattr(exc, "reason", exc)
            return RemoteError(
                f"Slack API unreachable for {what} ({type(reason).__name__})", permanent=False
            )
        if isinstance(exc, TimeoutError | ConnectionError | http.client.HTTPException | OSError):
            return DeliveryUnknownError(
                f"Slack {method} gave no valid answer after the request was sent for {what} "
                f"({_why(exc)})"
            )
        if isinstance(exc, SlackClientError):
            return RemoteError(
                f"Slack {method} could not be called for {what} ({type(exc).__name__})",
                permanent=True,
            )
        raise exc

    def _reading_error(self, exc: BaseException, what: str, method: str) -> RemoteError:
        """An error of a call without visible effect: never 'unknown', at worst 'not done'."""
        err = self._posting_error(exc, what, method)
        if isinstance(err, SinkBrokenError):
            return err
        return RemoteError(str(err), status=err.status, permanent=False)

    def send(self, post: Post) -> str:
        from slack_sdk.errors import SlackClientError

        channel = self.destination(post.list)
        try:
            resp = self._write.chat_postMessage(
                channel=channel,
                text=post.message["text"],
                blocks=post.message.get("blocks"),
                metadata={
                    "event_type": EVENT_TYPE,
                    "event_payload": {"key": post.key, "kind": post.kind},
                },
                unfurl_links=False,
                unfurl_media=False,
            )
        except (SlackClientError, OSError, http.client.HTTPException) as exc:
            raise self._posting_error(exc, post.label, "chat.postMessage") from None
        return str(resp.get("ts") or "")

    def _put(self, url: str, data: bytes, what: str) -> None:
        """Send a file's bytes to the upload URL Slack returned (no visible effect: retried on
        errors)."""
        check_url(url, "the upload URL Slack returned")
        last = None
        for _ in range(self.retry.max_attempts):
            req = urllib.request.Request(
                url, data=data, method="POST", headers={"Content-Type": "application/octet-stream"}
            )
            try:
                with urllib.request.urlopen(req, timeout=self.retry.timeout) as resp:
                    resp.read(4096)
                    return
            except urllib.error.HTTPError as exc:
                exc.close()
                last = f"HTTP {exc.code}"
                if exc.code < 500 and exc.code != 429:
                    break
            except (OSError, http.client.HTTPException) as exc:
                last = _why(exc)
        raise RemoteError(
            f"upload of {what} failed ({last}); the files are sent again next run", permanent=False
        )

    def upload(self, post: Post, on_uploaded: Callable[[list[str]], None] | None = None) -> str:
        """Upload ``post.files`` and share them in the list's channel with
        ``post.message['text']``."""
        from slack_sdk.errors import SlackClientError

        channel = self.destination(post.list)
        ids: list[str] = []
        for att in post.files:
            try:
                resp = self._read.files_getUploadURLExternal(
                    filename=att.filename, length=len(att.data)
                )
            except (SlackClientError, OSError, http.client.HTTPException) as exc:
                raise self._reading_error(
                    exc, f"{post.label} {att.filename}", "files.getUploadURLExternal"
                ) from None
            self._put(str(resp.get("upload_url") or ""), att.data, att.filename)
            ids.append(str(resp["file_id"]))
        if on_uploaded is not None:
            on_uploaded(ids)
        try:
            self._write.files_completeUploadExternal(
                files=[
                    {"id": i, "title": att.title} for i, att in zip(ids, post.files, strict=True)
                ],
                channel_id=channel,
                initial_comment=post.message["text"],
            )
        except (SlackClientError, OSError, http.client.HTTPException) as exc:
            raise self._posting_error(exc, post.label, "files.completeUploadExternal") from None
        return ",".join(ids)

    # -- checking
    # ------------------------------------------------------------------------------------
    def find(self, post: Post, since: str, file_ids: list[str] | tuple = ()) -> str | None:
        """The ``ts`` of ``post`` in its channel since ``since`` (ISO time), None if the history
        says it is absent.

        Raises :class:`RemoteError` when the history cannot be read to the end (then nothing is
        re-sent).
        """
        from slack_sdk.errors import SlackClientError

        channel = self.destination(post.list)
        oldest = f"{max(0.0, _epoch(since) - HISTORY_MARGIN):.6f}"
        wanted_files = set(file_ids)
        cursor = None
        for _ in range(self.history_pages):
            try:
                resp = self._read.conversations_history(
                    channel=channel,
                    oldest=oldest,
                    limit=HISTORY_PAGE,
                    include_all_metadata=True,
                    cursor=cursor,
                )
            except (SlackClientError, OSError, http.client.HTTPException) as exc:
                raise self._reading_error(
                    exc, f"the history of {channel}", "conversations.history"
                ) from None
            for message in resp.get("messages") or []:
                if _is_post(message, post, wanted_files):
                    return str(message.get("ts") or "found")
            cursor = (resp.get("response_metadata") or {}).get("next_cursor")
            if not resp.get("has_more") or not cursor:
                return None
        raise RemoteError(
            f"more than {self.history_pages * HISTORY_PAGE} messages in {channel} since the "
            "post: not all "
            "checked",
            permanent=False,
        )


def _is_post(message: dict, post: Post, file_ids: set[str]) -> bool:
    """Our metadata key; else the marker in a bot's text; else one of the post's uploaded files."""
    metadata = message.get("metadata") or {}
    if (
        metadata.get("event_type") == EVENT_TYPE
        and (metadata.get("event_payload") or {}).get("key") == post.key
    ):
        return True
    if file_ids and any(
        f.get("id") in file_ids for f in message.get("files") or [] if isinstance(f, dict)
    ):
        return True
    return bool(message.get("bot_id")) and post.marker in str(message.get("text") or "")
