"""Human-readable rendering of a :class:`~refnorm.conformance.harness.Report`."""

from __future__ import annotations

import math
from collections import defaultdict

DTYPE_ORDER = ("float64", "float32", "float16", "bfloat16")


def _ratio(r) -> str:
    if r is None:
        return "-"
    if isinstance(r, float) and math.isinf(r):
        return "inf"
    return f"{r:.2g}"


def table(report) -> str:
    """An op x dtype table: passed / failed / xfailed / not implemented, and the
    margin of the passing checks: the worst error as a multiple of the
    tolerance among the outputs of the checks that passed (failures and
    xfails are listed by :func:`failures` / the JSON report, with their own
    ratios, and would otherwise hide the margin as "inf")."""
    cells = defaultdict(lambda: {"passed": 0, "failed": 0, "xfailed": 0, "xpassed": 0, "not_implemented": 0,
                                 "worst": None})
    for o in report.outcomes:
        c = cells[(o.op, o.dtype)]
        c[o.status] += 1
        if o.worst_ratio is not None and o.status in ("passed", "xpassed"):
            c["worst"] = o.worst_ratio if c["worst"] is None else max(c["worst"], o.worst_ratio)
    ops = sorted({k[0] for k in cells})
    w = max([15] + [len(op) for op in ops])
    header = f"{'op':{w}s} {'dtype':9s} {'passed':>7s} {'failed':>7s} {'xfailed':>8s} {'xpassed':>8s} {'not impl':>9s} {'pass worst/tol':>15s}"
    lines = [header, "-" * len(header)]
    for op in ops:
        for dt in DTYPE_ORDER:
            if (op, dt) not in cells:
                continue
            c = cells[(op, dt)]
            lines.append(f"{op:{w}s} {dt:9s} {c['passed']:7d} {c['failed']:7d} {c['xfailed']:8d} {c['xpassed']:8d} "
                         f"{c['not_implemented']:9d} {_ratio(c['worst']):>15s}")
    counts = report.counts()
    lines.append("-" * len(header))
    lines.append(" ".join(f"{counts[s]} {s.replace('_', ' ')}," for s in counts).rstrip(",")
                 + f" in {report.seconds:.1f}s")
    return "\n".join(lines)


def failures(report, limit: int = 50) -> str:
    """One line per unexpected result: case id, function and why."""
    bad = report.unexpected
    lines = []
    for o in bad[:limit]:
        why = o.message if o.status == "failed" else f"passed but listed as xfail ({o.reason})"
        lines.append(f"{o.status.upper():8s} {o.case_id} :: {o.function}: {why}")
    if len(bad) > limit:
        lines.append(f"... and {len(bad) - limit} more")
    return "\n".join(lines)
