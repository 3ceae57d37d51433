"""Sending candidates to the TNS exactly once, and recording what the TNS answered per object.

:func:`submit_candidates` posts a bulk report per batch: it claims the batch's objects in the record
(``pending``) before the POST, records ``sent`` with the report id the TNS gives, then asks the
bulk-report-reply and records each object as ``accepted`` (with its TNS name), ``rejected`` (with
the TNS's message) or ``unknown``. A post whose outcome is unknown is never re-sent: its objects
stay ``unknown`` and sending stops. Every report carries its idempotency key (a hash of its objects,
the night and the destination; :func:`earlyia.report.record.report_key`) in the record and at the
end of each entry's remarks, so a report can be found on the TNS.

:func:`resolve_open_reports` (run first, by the next sending run) asks the TNS about the reports
whose answer is still missing. Call both holding the record's lock
(:meth:`ReportedRecord.exclusive`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from earlyia.report.record import (
    ACCEPTED,
    REJECTED,
    SENT,
    UNKNOWN,
    RecordedObject,
    ReportedRecord,
    report_key,
)
from earlyia.report.tns import BulkReport, TNSCredentials, redact_url
from earlyia.report.tns_api import ReplyResult, fetch_bulk_report_reply, post_bulk_report

NOT_SENT = "not sent"


@dataclass
class SubmitSettings:
    """Where and how to send. ``night`` (``YYYY-MM-DD``) enters the report keys; default: today
    (UTC)."""

    url: str
    credentials: TNSCredentials = field(repr=False)
    batch_size: int = 50
    night: str | None = None
    timeout: float = 60.0
    max_attempts: int = 5
    retry_wait: float = 2.0
    max_wait: float = 120.0
    reply_polls: int = 6
    reply_wait: float = 5.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)

    @property
    def destination(self) -> str:
        """The URL as recorded and shown (credentials redacted)."""
        return redact_url(self.url).rstrip("/")


@dataclass
class ObjectOutcome:
    """One object's state after this run: accepted, rejected, unknown, sent (awaiting the TNS's
    answer) or not sent."""

    object_id: str
    state: str
    tns_name: str | None = None
    message: str = ""
    report_key: str | None = None
    report_id: str | None = None
    previous: str | None = None


@dataclass
class SubmitResult:
    """What a sending run did: this run's objects, the answers collected for earlier reports, and
    what a person must check."""

    objects: list[ObjectOutcome] = field(default_factory=list)
    earlier: list[ObjectOutcome] = field(default_factory=list)
    interrupted: list[str] = field(default_factory=list)
    to_check: list[ObjectOutcome] = field(default_factory=list)
    other_destinations: dict[str, int] = field(default_factory=dict)
    stopped: str = ""
    not_attempted: list[str] = field(default_factory=list)
    report_keys: list[str] = field(default_factory=list)
    report_ids: list[str] = field(default_factory=list)

    def with_state(self, state: str, *, earlier: bool = True) -> list[ObjectOutcome]:
        pool = self.objects + (self.earlier if earlier else [])
        return [o for o in pool if o.state == state]

    @property
    def failed(self) -> bool:
        """Something a person should look at now: an object of this run rejected, unknown or not
        sent, or an earlier report now answered with a rejection or not understood."""
        bad = (REJECTED, UNKNOWN, NOT_SENT)
        return (
            bool(self.stopped)
            or bool(self.interrupted)
            or any(o.state in bad for o in self.objects)
            or any(o.state in bad and o.state != o.previous for o in self.earlier)
        )

    def to_dict(self) -> dict:
        def group(state: str) -> dict:
            return {
                o.object_id: (o.tns_name if state == ACCEPTED else o.message)
                for o in self.with_state(state)
            }

        return {
            "accepted": group(ACCEPTED),
            "rejected": group(REJECTED),
            "unknown": group(UNKNOWN),
            "awaiting_answer": group(SENT),
            "not_sent": group(NOT_SENT),
            "not_attempted": self.not_attempted,
            "interrupted_earlier": self.interrupted,
            "to_check_on_tns": [asdict(o) for o in self.to_check],
            "open_reports_elsewhere": self.other_destinations,
            "stopped": self.stopped,
            "report_keys": self.report_keys,
            "report_ids": self.report_ids,
        }


def _today() -> str:
    return datetime.now(UTC).date().isoformat()


def _outcomes(
    objs: list[str], reply: ReplyResult, key: str, report_id: str
) -> dict[str, ObjectOutcome]:
    """Per object (entry ``i`` of the report is ``objs[i]``) what the reply says."""
    out = {}
    for i, oid in enumerate(objs):
        if reply.outcome == "ready":
            e = reply.entries.get(i)
            state, name, msg = (
                (e.state, e.tns_name, e.message)
                if e
                else (UNKNOWN, None, "no feedback for this entry")
            )
        elif reply.outcome == UNKNOWN:
            state, name, msg = (
                UNKNOWN,
                None,
                f"the TNS's answer was not understood: {reply.message}",
            )
        else:
            state, name, msg = SENT, None, f"no answer from the TNS yet: {reply.message}"
        out[oid] = ObjectOutcome(oid, state, name, msg, key, report_id)
    return out


def _record_answer(
    record: ReportedRecord, key: str, outcomes: dict[str, ObjectOutcome], reply: ReplyResult
) -> None:
    """Record an answer of the TNS (``ready``, or ``unknown``: not understood); no answer yet
    changes nothing."""
    if reply.outcome not in ("ready", UNKNOWN):
        return
    final = {
        o.object_id: (o.state, o.tns_name, o.message)
        for o in outcomes.values()
        if o.state in (ACCEPTED, REJECTED, UNKNOWN)
    }
    if final:
        record.finish(
            key,
            final,
            outcome="answered" if reply.outcome == "ready" else "answer not understood",
            message=reply.message,
        )


def resolve_open_reports(
    record: ReportedRecord, settings: SubmitSettings
) -> tuple[list[ObjectOutcome], dict[str, int]]:
    """Ask the TNS about every report of ``settings.destination`` whose answer is missing; record
    what it says.

    Returns the objects' outcomes and, per other destination, how many objects await an answer
    there.
    """
    resolved: list[ObjectOutcome] = []
    elsewhere: dict[str, int] = {}
    for (dest, report_id), objs in sorted(record.open_reports().items()):
        if dest != settings.destination:
            elsewhere[dest] = elsewhere.get(dest, 0) + len(objs)
            continue
        by_key: dict[str, list[RecordedObject]] = {}
        for o in objs:
            by_key.setdefault(o.report_key or "", []).append(o)
        for key, members in by_key.items():
            n = max((o.entry for o in members if o.entry is not None), default=-1) + 1
            if n == 0 or not key:
                continue  # objects recorded without their entry in the report: nothing to ask
            reply = fetch_bulk_report_reply(
                report_id,
                settings.url,
                settings.credentials,
                n,
                polls=settings.reply_polls,
                first_wait=settings.reply_wait,
                timeout=settings.timeout,
                wait_first=False,
                sleep=settings.sleep,
            )
            order = [None] * n
            for o in members:
                if o.entry is not None:
                    order[o.entry] = o.object_id
            outcomes = {
                oid: oc
                for oid, oc in _outcomes([x or "" for x in order], reply, key, report_id).items()
                if oid
            }
            for o in members:
                outcomes[o.object_id].previous = o.state
            if reply.outcome in ("ready", UNKNOWN):
                _record_answer(record, key, outcomes, reply)
            else:  # no answer yet: every object keeps its state
                for o in members:
                    outcomes[o.object_id].state = o.state
            resolved.extend(outcomes.values())
    return resolved, elsewhere


def _with_key(entry: dict, key: str) -> dict:
    out = dict(entry)
    out["remarks"] = f"{entry.get('remarks', '')} (earlyia report {key})".strip()
    return out


def collect_earlier(record: ReportedRecord, settings: SubmitSettings) -> SubmitResult:
    """Before sending: objects an interrupted run left ``pending`` become ``unknown``, and the
    TNS is asked about the reports whose answer is missing (:func:`resolve_open_reports`). Run it
    before selecting the candidates, so an object the TNS has since rejected is a candidate
    again."""
    result = SubmitResult()
    result.interrupted = record.recover_interrupted() if record.path.exists() else []
    result.earlier, result.other_destinations = resolve_open_reports(record, settings)
    return result


def submit_candidates(
    bulk: BulkReport,
    record: ReportedRecord,
    settings: SubmitSettings,
    *,
    result: SubmitResult | None = None,
) -> SubmitResult:
    """Send ``bulk`` to the TNS in batches of ``settings.batch_size``, each object at most once (see
    the module doc).

    ``result``: what :func:`collect_earlier` returned (called here when None). Never raises for a
    TNS failure: the result says what happened per object, and why sending stopped.
    """
    result = collect_earlier(record, settings) if result is None else result
    entries = list(bulk.report.get("at_report", {}).values())
    night = settings.night or _today()
    size = max(1, int(settings.batch_size))
    for start in range(0, len(entries), size):
        ids = bulk.object_ids[start : start + size]
        alerts = bulk.alert_ids[start : start + size]
        if result.stopped:
            result.not_attempted.extend(ids)
            continue
        key = record.unused_key(report_key(ids, night, settings.destination))
        claimed = record.claim(key, ids, alerts, night=night, destination=settings.destination)
        if not claimed:
            continue
        result.report_keys.append(key)
        by_id = dict(zip(ids, entries[start : start + size], strict=True))
        report = {
            "at_report": {str(i): _with_key(by_id[oid], key) for i, oid in enumerate(claimed)}
        }
        try:
            post = post_bulk_report(
                report,
                settings.url,
                settings.credentials,
                max_attempts=settings.max_attempts,
                retry_wait=settings.retry_wait,
                max_wait=settings.max_wait,
                timeout=settings.timeout,
                sleep=settings.sleep,
            )
        except BaseException:
            # interrupted while posting (Ctrl-C, a bug): the report may be out; never leave it to be
            # re-sent
            record.finish(
                key,
                {oid: (UNKNOWN, None, "interrupted while posting") for oid in claimed},
                outcome="interrupted",
            )
            raise
        if post.outcome == "received":
            record.mark_sent(key, post.report_id)
            result.report_ids.append(post.report_id)
            reply = fetch_bulk_report_reply(
                post.report_id,
                settings.url,
                settings.credentials,
                len(claimed),
                polls=settings.reply_polls,
                first_wait=settings.reply_wait,
                timeout=settings.timeout,
                sleep=settings.sleep,
            )
            outcomes = _outcomes(claimed, reply, key, post.report_id)
            _record_answer(record, key, outcomes, reply)
            result.objects.extend(outcomes.values())
            continue
        if post.outcome == REJECTED:
            record.finish(
                key,
                {oid: (REJECTED, None, post.message) for oid in claimed},
                outcome="refused",
                message=post.message,
            )
            state = REJECTED
        elif post.outcome == "not_sent":
            record.release(key, post.message)
            state = NOT_SENT
        else:
            record.finish(
                key,
                {oid: (UNKNOWN, None, post.message) for oid in claimed},
                outcome="unknown",
                message=post.message,
            )
            state = UNKNOWN
        result.objects.extend(
            ObjectOutcome(oid, state, None, post.message, key, None) for oid in claimed
        )
        result.stopped = post.message
    result.to_check = [
        ObjectOutcome(o.object_id, o.state, None, o.message or "", o.report_key, None)
        for o in record.unknown_without_report()
    ]
    return result
