"""The input recipes: the fast deviation solver takes exactly the moves of
the readable one it replaced (kept here as the specification)."""

from __future__ import annotations

import numpy as np
import pytest

from refnorm.golden.recipes import _solve_deviations


def _solve_deviations_readable(K: int, T: int, start: np.ndarray) -> np.ndarray:
    """The original solver: every move rebuilds the value -> entries map and
    scans all pairs of distinct values (quadratic, and 5000 moves before it
    gives up on a cycle).  The corpus was first generated with it."""
    D = [int(v) for v in start]
    s = sum(D)
    i = 0
    while s != 0:  # make the sum zero
        step = -1 if s > 0 else 1
        D[i % K] += step
        s += step
        i += 1
    target = K * T
    for _ in range(5000):
        delta = target - int(np.dot(np.array(D, dtype=np.int64), np.array(D, dtype=np.int64)))
        if delta == 0:
            return np.array(D, dtype=np.int64)
        if delta % 2:
            raise ValueError("parity: K*T must be even when sum(D) == 0")
        want = delta // 2 - 1  # needed D_i - D_j
        pos = {}
        for idx, d in enumerate(D):
            pos.setdefault(d, []).append(idx)
        vals = sorted(pos)
        best = None
        for a in vals:
            for b in vals:
                if a == b and len(pos[a]) < 2:
                    continue
                diff = a - b
                if diff == want:
                    best = (a, b)
                    break
                # partial step: same direction as delta, not overshooting
                ok = (delta > 0 and 0 <= diff < want) or (delta < 0 and want < diff < -1)
                if ok and (best is None or abs(want - diff) < abs(want - (best[0] - best[1]))):
                    best = (a, b)
            if best is not None and best[0] - best[1] == want:
                break
        if best is None:  # widen: push the extremes apart
            a, b = vals[-1], vals[0]
            best = (a, b) if delta > 0 else (b, a)
        a, b = best
        ia = pos[a][0]
        ib = next(j for j in pos[b] if j != ia)
        D[ia] += 1
        D[ib] -= 1
    raise ValueError(f"could not construct deviations for K={K}, T={T}")



def _outcome(solver, K, T, start):
    try:
        return solver(K, T, start).tolist()
    except ValueError as e:
        return f"ValueError: {e}"


def _cases():
    rng = np.random.default_rng(20261129)
    cases = []
    for K in (2, 3, 4, 5, 8, 16, 33, 64):
        for T in (1, 3, 15, 63, 255):
            for _ in range(3):
                A = max(1, round((3 * T) ** 0.5))
                cases.append((K, T, rng.integers(-A, A + 1, size=K)))
    return cases


@pytest.mark.parametrize("K,T,start", _cases())
def test_fast_solver_takes_the_readable_solvers_moves(K, T, start):
    assert _outcome(_solve_deviations, K, T, start) == _outcome(_solve_deviations_readable, K, T, start)


def test_the_comparison_covers_successes_and_both_failures():
    outcomes = [_outcome(_solve_deviations_readable, K, T, s) for K, T, s in _cases()]
    assert any(isinstance(o, list) for o in outcomes)
    assert any(isinstance(o, str) and "could not construct" in o for o in outcomes)
    assert any(isinstance(o, str) and "parity" in o for o in outcomes)


def test_solution_meets_its_contract():
    D = _solve_deviations(1024, 63, np.zeros(1024, dtype=np.int64))
    assert D.sum() == 0 and int((D * D).sum()) == 1024 * 63
