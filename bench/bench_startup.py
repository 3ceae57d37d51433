"""Start-up time of the ``earlyia`` command: ``earlyia --help`` against a bare interpreter, medians
of repeats.

Usage:
    python bench/bench_startup.py [--repeats 15]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time


def _median_seconds(argv: list[str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args(argv)
    bare = _median_seconds([sys.executable, "-c", "pass"], args.repeats)
    help_ = _median_seconds([sys.executable, "-m", "earlyia.cli.main", "--help"], args.repeats)
    version = _median_seconds([sys.executable, "-m", "earlyia.cli.main", "--version"], args.repeats)
    print(f"python -c pass           {bare * 1000:7.0f} ms (median of {args.repeats})")
    print(
        f"earlyia --help           {help_ * 1000:7.0f} ms ({help_ / bare:.1f}x the bare "
        "interpreter)"
    )
    print(f"earlyia --version        {version * 1000:7.0f} ms")


if __name__ == "__main__":
    main()
