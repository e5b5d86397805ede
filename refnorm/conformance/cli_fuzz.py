"""``refnorm fuzz``: property-based conformance from the command line (see :mod:`refnorm.conformance.fuzz`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .._progress import Progress
from ..cli import _csv, known
from ..golden.selection import as_list, choices
from .cli_check import backend_and_xfails
from .fuzz import coverage, fuzz

DEFAULT_OUT = "refnorm-failures"


def _positive(what, minimum=1):
    def parse(value: str) -> int:
        try:
            n = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be an integer, got {value!r}") from None
        if n < minimum:
            raise argparse.ArgumentTypeError(f"{what} must be >= {minimum}, got {n}")
        return n
    return parse


def add_fuzz_parser(subparsers):
    p = subparsers.add_parser(
        "fuzz", help="draw property-based cases and check a backend on them",
        description="Draw cases the committed corpus cannot hold -- reduction sets of more than 2^17 elements, "
                    "more than 2^16 sets, sizes next to powers of two, every tensor (dy included) as a transposed, "
                    "Fortran-ordered, channels-last, stepped, reversed or offset view, every dtype and mixed "
                    "dtypes, empty and size-1 sets, weight/bias present and absent, eps from 0 to large -- by a "
                    "schedule that reaches all of them within the first examples of every op. Each is checked "
                    "like a corpus case (refnorm's float64 values, the derived tolerances), and every input "
                    "must be bitwise unchanged after each call. A failing example is shrunk and written to --out "
                    "as a corpus case that `refnorm check --golden-dir` replays. Exits 1 on any failure, 0 "
                    "otherwise, 2 on usage errors.")
    p.add_argument("--backend", required=True, metavar="NAME|MODULE|FILE.py",
                   help="the backend to check (as for refnorm check)")
    p.add_argument("--ops", nargs="+", type=known("op"), metavar="OP",
                   help="ops to draw (default: every op whose forward the backend defines)")
    p.add_argument("--dtypes", nargs="+", type=known("dtype"), metavar="DTYPE",
                   help=f"dtypes to draw: {' '.join(choices('dtype'))} (default: all; mixed precision is drawn "
                        "when a half dtype is selected)")
    p.add_argument("--examples", type=_positive("--examples"), default=200, metavar="N",
                   help="how many cases to draw (default: 200)")
    p.add_argument("--seed", type=_positive("--seed", 0), default=0, metavar="S",
                   help="the seed: the same seed draws the same cases on any machine (default: 0)")
    p.add_argument("--max-elements", type=_positive("--max-elements"), default=1 << 18, metavar="M",
                   help="largest input drawn, in elements (default: 262144; sets of more than 2^17 elements and "
                        "more than 2^16 sets need more than 131072)")
    p.add_argument("--adversarial", action="store_true",
                   help="also draw hard value patterns: a mean 1000 standard deviations from 0, constant sets, "
                        "values over 24 binades, a tiny spread")
    p.add_argument("--repeat", type=_positive("--repeat"), default=1, metavar="N",
                   help="call every function N times and require identical bits")
    p.add_argument("--batch-invariance", action="store_true",
                   help="require a sample's output not to depend on the rest of the batch")
    p.add_argument("--max-failures", type=_positive("--max-failures"), default=5, metavar="K",
                   help="stop after K failing examples (default: 5)")
    p.add_argument("--out", metavar="DIR", default=DEFAULT_OUT,
                   help=f"where failing cases are written, as a golden corpus (default: ./{DEFAULT_OUT})")
    p.add_argument("--xfail", metavar="FILE", help="xfail file (default: the shipped file of a built-in backend)")
    p.add_argument("--no-xfail", action="store_true", help="ignore every xfail file")
    p.add_argument("--json", metavar="FILE", help="write the report (coverage, timing, failures) as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--traceback", action="store_true", help="on an error print the full traceback")
    p.set_defaults(func=run_fuzz)
    return p


def run_fuzz(args) -> int:
    backend, _, xfails = backend_and_xfails(args)
    ops = as_list(_csv(args.ops), "op", choices("op")) if args.ops else None
    dtypes = as_list(_csv(args.dtypes), "dtype", choices("dtype")) if args.dtypes else None
    with Progress("fuzz " + args.backend, enabled=not args.quiet) as bar:
        report = fuzz(backend, backend_name=args.backend, ops=ops, dtypes=dtypes, examples=args.examples,
                      seed=args.seed, max_elements=args.max_elements, adversarial=args.adversarial,
                      repeat=args.repeat, batch_invariance=args.batch_invariance, xfails=xfails,
                      out_dir=Path(args.out), max_failures=args.max_failures, progress=bar.update)
    table, _ = coverage(report, dtypes, args.max_elements)
    t = report.timing
    print(f"backend {args.backend}, seed {args.seed}: {report.examples} examples, {report.outcomes} checks "
          f"({report.passed} passed, {report.xfailed} xfailed, {report.not_implemented} not implemented, "
          f"{len(report.failures)} failing examples)")
    print("coverage (required features reached, #first example):")
    print(table)
    rate = report.examples / report.seconds if report.seconds else float("nan")
    print(f"{report.seconds:.1f} s, {rate:.1f} examples/s: backend {t.backend:.1f} s, refnorm oracle (inputs, "
          f"expected values, tolerances) {t.oracle:.1f} s, harness {t.harness:.1f} s")
    for f in report.failures:
        print(f.message())
    if report.failures:
        print(f"{len(report.failures)} failing example(s), shrunk, written to {args.out}; replay with:\n"
              f"  refnorm check --backend {args.backend} --golden-dir {args.out}")
    if args.json:
        Path(args.json).write_text(json.dumps(report.to_json(), indent=1, sort_keys=True, default=str) + "\n",
                                   encoding="utf-8")
    if not report.examples:
        print("no example was drawn", file=sys.stderr)
        return 1
    return 0 if report.ok else 1
