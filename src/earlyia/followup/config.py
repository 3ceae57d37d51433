"""Configuration of the follow-up loop: observability constraints, lists, retries, secrets.

Every constraint is a parameter with a default taken from Fink's live loop (Siding Spring,
``dec < 20``; at most 20 days since the first detection; ``drb > 0.5``; ``classtar > 0.4``)
plus a spectrograph magnitude limit that Fink does not apply. Nothing here reads the
environment at import time: :func:`slack_webhook_url` reads it when called.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from urllib.parse import urlsplit

from earlyia.errors import ConfigError
from earlyia.select import EXTRAGALACTIC_TYPES

#: Environment variable holding the Slack incoming-webhook URL (a secret: never printed).
SLACK_WEBHOOK_ENV = "EARLYIA_SLACK_WEBHOOK"
#: Environment variable holding the database path.
DB_ENV = "EARLYIA_DB"
#: Object pages are linked here.
PORTAL_URL = "https://fink-portal.org/"


def extragalactic_types() -> tuple[str, ...]:
    """The SIMBAD types compatible with a supernova (``earlyia.select.EXTRAGALACTIC_TYPES``)."""
    return tuple(EXTRAGALACTIC_TYPES)


@dataclass(frozen=True)
class Constraints:
    """Which alerts may be proposed for spectroscopy.

    Args:
        dec_min, dec_max: declination range visible from the observatory (Siding Spring: < +20).
        max_days_since_first: ``mjd - (jdstarthist - 2400000.5)`` must not exceed this (days).
        mag_limit: faintest last magnitude the spectrograph can classify (None: no limit).
        drb_min, classtar_min: real-bogus and star-galaxy cuts (strictly greater than).
        min_score: the classifier score must exceed this (Fink: ``> 0``).
        extragalactic: keep only these ``cdsxmatch`` values (None: the project's list).
    """

    dec_min: float = -90.0
    dec_max: float = 20.0
    max_days_since_first: float = 20.0
    mag_limit: float | None = 19.5
    drb_min: float = 0.5
    classtar_min: float = 0.4
    min_score: float = 0.0
    extragalactic: tuple[str, ...] | None = None

    def types(self) -> tuple[str, ...]:
        return self.extragalactic if self.extragalactic is not None else extragalactic_types()

    def config(self) -> dict:
        out = asdict(self)
        out["extragalactic"] = list(self.types())
        return out


@dataclass(frozen=True)
class EarlyList:
    """Fink's second list: likely SN Ia while still young, by descending score."""

    min_score: float = 0.5
    max_days_since_first: float = 10.0
    n: int = 30


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of a webhook call: 429 (honouring Retry-After) and 5xx/network errors.

    The delay before attempt k (k >= 1) is ``min(max_delay, base_delay * factor**(k-1))``,
    or the server's ``Retry-After`` when it sends one (capped by ``max_delay``).
    """

    max_attempts: int = 5
    base_delay: float = 1.0
    factor: float = 2.0
    max_delay: float = 60.0
    timeout: float = 10.0

    def __post_init__(self):
        if self.max_attempts < 1:
            raise ConfigError(f"RetryPolicy.max_attempts must be >= 1, got {self.max_attempts}")
        if self.base_delay < 0 or self.max_delay < 0 or self.factor < 1:
            raise ConfigError("RetryPolicy: delays must be >= 0 and factor >= 1")

    def delay(self, attempt: int) -> float:
        return min(self.max_delay, self.base_delay * self.factor ** max(0, attempt - 1))


def slack_webhook_url(env: dict | None = None) -> str:
    """The webhook URL from ``EARLYIA_SLACK_WEBHOOK`` (read at call time; never echoed)."""
    env = os.environ if env is None else env
    url = env.get(SLACK_WEBHOOK_ENV, "").strip()
    if not url:
        raise ConfigError(
            f"set {SLACK_WEBHOOK_ENV} to the Slack incoming-webhook URL, or use --sink "
            "stdout / --sink file:PATH"
        )
    return check_url(url, SLACK_WEBHOOK_ENV)


def check_url(url: str, what: str) -> str:
    """``url`` if it is a well-formed http(s) URL; otherwise a :class:`ConfigError` that does not
    show it."""
    bad = ConfigError(f"{what} is not a valid http(s) URL (value not shown); check it")
    if not isinstance(url, str) or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise bad
    try:
        parts = urlsplit(url)
        _ = parts.port  # a non-numeric or out-of-range port raises here
    except ValueError:
        raise bad from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise bad
    return url
