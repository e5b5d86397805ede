"""Human-readable rendering of a :class:`~refnorm.conformance.harness.Report`.

:func:`table` summarises (op x dtype counts, then where the unexpected results
concentrate); :func:`failures` lists the unexpected results grouped by case.
Lines are kept within :data:`WIDTH` characters, wrapping long ones, so the
report reads in a terminal; the JSON report (``Report.to_json``) has every
detail of every result.
"""

from __future__ import annotations

import math
import textwrap
from collections import Counter, defaultdict

from ..golden.casespec import TIERS
from ..golden.dtypes import DTYPE_NAMES

WIDTH = 160  # the most characters in a line of the failure listing
HANG = 8  # the extra indentation of a wrapped line's continuation


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
    ratios, and would otherwise hide the margin as "inf").  Under it, when
    anything is unexpected, two lines count the unexpected results per dtype and
    per tier, most first, so the dtype and the tier a backend fails most stand out."""
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
        for dt in DTYPE_NAMES:
            if (op, dt) not in cells:
                continue
            c = cells[(op, dt)]
            lines.append(f"{op:{w}s} {dt:9s} {c['passed']:7d} {c['failed']:7d} {c['xfailed']:8d} {c['xpassed']:8d} "
                         f"{c['not_implemented']:9d} {_ratio(c['worst']):>15s}")
    counts = report.counts()
    lines.append("-" * len(header))
    lines.append(" ".join(f"{counts[s]} {s.replace('_', ' ')}," for s in counts).rstrip(",")
                 + f" in {report.seconds:.1f}s")
    if report.unexpected:
        lines.append(_most(report.unexpected, "dtype", DTYPE_NAMES))
        lines.append(_most(report.unexpected, "tier", TIERS))
    return "\n".join(lines)


def _most(outcomes, attr: str, order) -> str:
    """Where unexpected results concentrate along one attribute of the outcomes
    (dtype or tier): the count of each value that has any, most first (ties in
    ``order``), and which value(s) have the most."""
    n = Counter(getattr(o, attr) for o in outcomes)
    rank = sorted(n, key=lambda v: (-n[v], order.index(v) if v in order else len(order), v))
    top = [v for v in rank if n[v] == n[rank[0]]]
    return (f"unexpected by {attr}: " + ", ".join(f"{v} {n[v]}" for v in rank)
            + f" (most: {' and '.join(top)})")


def failures(report, limit: int = 50, json_path=None) -> str:
    """The unexpected results (failures and unexpected passes), at most
    ``limit`` of them, grouped by case: a header line with the case id, tier and
    description, then per function its status and, indented below it, why --
    for out-of-tolerance outputs one line each with the count, the index of the
    worst element, its expected and actual values, and the error as a multiple of
    the tolerance and in ulps.  A last line says how many more there are and
    where all of them are: ``json_path`` when the caller writes the JSON report
    there, else the ``--json`` option of ``refnorm check`` that would."""
    bad = report.unexpected
    by_case = defaultdict(list)
    for o in bad[:limit]:
        by_case[o.case_id].append(o)
    lines = []
    for case_id, outcomes in by_case.items():
        head = f"{case_id} ({outcomes[0].tier})"
        lines += _wrap(f"{head}: {outcomes[0].description}" if outcomes[0].description else head, "")
        for o in outcomes:
            lines += _wrap(f"{o.status.upper()} {o.function}", "  ")
            why = o.message if o.status == "failed" else f"passed but listed as xfail ({o.reason})"
            for line in why.splitlines():
                lines += _wrap(line, "    ")
    if len(bad) > limit:
        where = (f"{json_path} has all of them" if json_path else
                 "add --json FILE to the refnorm check command to write all of them with every detail")
        lines += _wrap(f"... and {len(bad) - limit} more unexpected results not shown ({limit} of {len(bad)} above); "
                       + where, "")
    return "\n".join(lines)


def _wrap(text: str, indent: str) -> list[str]:
    """``text`` at ``indent`` in lines of at most :data:`WIDTH` characters
    (words, numbers included, are never split).  Continuation lines are
    indented :data:`HANG` more, deeper than the next level of the listing
    (cases at 0, functions at 2, outputs at 4), so they read as one line."""
    return textwrap.wrap(text, WIDTH, initial_indent=indent, subsequent_indent=indent + " " * HANG,
                         break_long_words=False, break_on_hyphens=False)
