"""The sinks a follow-up list can be posted to, by the name the command line takes (``--sink``).

Kept apart from :mod:`earlyia.followup.notify` because the Slack bot sink
(:mod:`earlyia.followup.slackbot`) is built on that module.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from earlyia.errors import ConfigError
from earlyia.followup.config import RetryPolicy
from earlyia.followup.notify import FileSink, SlackSink, StdoutSink
from earlyia.followup.slackbot import SlackBotSink

SINK_SPECS = "slack (incoming webhook), slack-bot (Web API), stdout or file:PATH"


def make_sink(
    spec: str,
    *,
    retry: RetryPolicy | None = None,
    sleep: Callable[[float], None] = time.sleep,
    channels: dict[str, str | None] | None = None,
    token: str | None = None,
    base_url: str | None = None,
):
    """``slack`` | ``slack-bot`` | ``stdout`` | ``file:PATH``."""
    if spec == "slack":
        return SlackSink(retry=retry, sleep=sleep)
    if spec == "slack-bot":
        return SlackBotSink(token=token, channels=channels or {}, base_url=base_url, retry=retry)
    if spec == "stdout":
        return StdoutSink()
    if spec.startswith("file:") and len(spec) > 5:
        return FileSink(spec[5:])
    raise ConfigError(f"--sink {spec!r}: expected {SINK_SPECS}")
