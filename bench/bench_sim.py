"""Speed of the built-in simulator: median wall time of simulate(n) for a few n (prints figures).

Run: python bench/bench_sim.py
"""

from __future__ import annotations

import time

import numpy as np

from earlyia.sim import simulate


def main() -> None:
    simulate(100, random_state=0)  # warm the parameter cache
    for n in (1_000, 10_000, 50_000):
        times = []
        for rep in range(5 if n <= 10_000 else 2):
            t = time.perf_counter()
            lc = simulate(n, random_state=rep)
            times.append(time.perf_counter() - t)
        med = float(np.median(times))
        print(
            f"simulate({n:>6}): median {med:6.3f} s  ({n / med:,.0f} objects/s, "
            f"{lc.n_points / n:.1f} points/object)"
        )


if __name__ == "__main__":
    main()
