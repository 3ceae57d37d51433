"""Long steps say how far they are, also when the output is piped."""

from __future__ import annotations

import io

from earlyia.progress import Progress


class _Pipe(io.StringIO):
    def isatty(self) -> bool:
        return False


def test_piped_output_gets_plain_lines_with_the_count_and_the_end():
    out = _Pipe()
    with Progress(5, "active learning", unit="runs", every=0.0, stream=out) as bar:
        for _ in range(5):
            bar.update()
    lines = out.getvalue().splitlines()
    assert lines[0] == "active learning: 5 of 5 runs to do"
    assert lines[-1].startswith("active learning: 5/5 runs (")
    assert len(lines) == 6 and "\r" not in out.getvalue()


def test_lines_are_rate_limited_but_the_last_is_always_printed():
    out = _Pipe()
    with Progress(1000, "features", unit="alerts", every=3600.0, stream=out) as bar:
        for _ in range(1000):
            bar.update()
    assert len(out.getvalue().splitlines()) == 2  # the start and the end


def test_resumed_work_counts_from_what_was_done_and_off_prints_nothing():
    out = _Pipe()
    with Progress(4, "x", every=0.0, initial=3, stream=out) as bar:
        bar.update()
    assert out.getvalue().splitlines()[0] == "x: 1 of 4 it to do"
    silent = _Pipe()
    with Progress(4, "x", mode="off", stream=silent) as bar:
        bar.update(4)
    assert silent.getvalue() == ""
