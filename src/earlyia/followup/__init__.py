"""The live active-learning loop: select targets, notify observers, ingest spectra, retrain,
promote.

Modules: :mod:`~earlyia.followup.db` (SQLite state, migrations, one transaction per command),
:mod:`~earlyia.followup.config` (constraints, retry policy, secrets read at call time),
:mod:`~earlyia.followup.targets`, :mod:`~earlyia.followup.notify` (exactly-once posting; the
``--sink`` choices in :mod:`~earlyia.followup.sinks`, the Slack bot in
:mod:`~earlyia.followup.slackbot`, cutouts in :mod:`~earlyia.followup.cutouts`),
:mod:`~earlyia.followup.ingest`, :mod:`~earlyia.followup.retrain` and
:mod:`~earlyia.followup.model_registry` (models list/promote/rollback). The command line is
``earlyia followup ...`` and ``earlyia models list|promote|rollback``; see ``docs/followup.md``.
"""
