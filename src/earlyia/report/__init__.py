"""Reporting early SN Ia candidates: the candidate rule, TNS AT reports, score calibration and
stacking.

* :mod:`earlyia.report.candidates`: :class:`CandidateRule` (Fink's rule, every threshold a
  parameter), :func:`select_candidates` (one report per object from its latest qualifying alert).
* :mod:`earlyia.report.tns`: the TNS bulk-report JSON (what Fink's fink-tns sends) and human tables.
* :mod:`earlyia.report.tns_api`: posting a bulk report and reading the TNS's per-entry answer.
* :mod:`earlyia.report.record`: :class:`ReportedRecord`, each reported object's state (SQLite,
  locked).
* :mod:`earlyia.report.submit`: sending candidates exactly once and recording the TNS's answer.
* :mod:`earlyia.report.calibration`: reliability, Brier, ECE and a calibrated score.
* :mod:`earlyia.report.stacking`: a learned combination of the available scores vs the fixed rule.
"""

from earlyia.report.candidates import (
    CandidateRule,
    CandidateSelection,
    ReportedRecord,
    select_candidates,
)

__all__ = ["CandidateRule", "CandidateSelection", "ReportedRecord", "select_candidates"]
