"""Throughput of the som1999 level engine: points per second, against a numpy baseline of the same size.

Run: ``.venv/bin/python benchmarks/levels.py [N]`` (default 2,000,000 points). The baseline is one
``np.interp`` of every point's z plus a norm (the least work any per-point landmark rule must do), so the ratio
says how many such numpy passes the engine costs.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from neckmatch.geometry.levels import _demo_landmarks, assign_levels


def _best_of(fn, repeat: int = 3) -> float:
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main(n: int = 2_000_000) -> None:
    rng = np.random.default_rng(0)
    pts = rng.uniform([-70, -60, -100], [70, 50, 60], size=(n, 3))
    lm = _demo_landmarks()
    curve = lm.curve("SCM_posterior_R").points

    def baseline() -> None:
        np.interp(pts[:, 2], curve[:, 2], curve[:, 0])
        np.linalg.norm(pts, axis=1)

    t_base = _best_of(baseline)
    t_lev = _best_of(lambda: assign_levels(pts, lm))
    print(f"assign_levels: {n:,} points in {t_lev:.3f} s = {n / t_lev / 1e6:.2f} M points/s")
    print(f"baseline (np.interp + norm): {t_base:.3f} s; ratio engine/baseline = {t_lev / t_base:.1f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2_000_000)
