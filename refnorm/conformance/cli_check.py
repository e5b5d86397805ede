"""``refnorm check``: run a backend against the golden corpus from the command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .._progress import Progress
from ..cli import _add_filters, _csv
from .backends import load_backend
from .harness import check, read_xfails
from .report import failures, table

XFAIL_DIR = Path(__file__).resolve().parent / "xfails"


def default_xfails(backend_spec: str) -> Path | None:
    """The shipped xfail file of a built-in backend (``xfails/<name>.txt``), if any."""
    p = XFAIL_DIR / f"{backend_spec}.txt"
    return p if p.is_file() else None


def add_check_parser(subparsers):
    p = subparsers.add_parser(
        "check", help="run a backend against the golden corpus",
        description="Check every applicable golden case against a backend: a built-in name (refnorm, torch, jax, "
                    "numpy32, torch-fwfw: PyTorch's nested forward mode; keras, keras-jax, onnx, onnx-function, "
                    "onnxruntime: the runtimes of docs/findings), mutant:<name>, a dotted module path "
                    "(looked up in the current folder first, so "
                    "'mymodule' finds ./mymodule.py) or a path to a .py file (which may import the modules beside "
                    "it) exposing refnorm's function names. Exits 1 on any unexpected failure or unexpected pass of "
                    "an xfail rule, 2 when the backend cannot be loaded (one line naming its file and the cause).")
    p.add_argument("--backend", required=True, metavar="NAME|MODULE|FILE.py", help="the backend to check")
    _add_filters(p)
    p.add_argument("--golden-dir", metavar="DIR",
                   help="corpus directory (default: $REFNORM_GOLDEN_DIR, else the committed or installed corpus)")
    p.add_argument("--xfail", metavar="FILE",
                   help="xfail file: '<case id or glob>[::<function>]  # reason' per line "
                        "(default: the shipped file of a built-in backend)")
    p.add_argument("--no-xfail", action="store_true", help="ignore every xfail file")
    p.add_argument("--json", metavar="OUT", help="write the full report as JSON")
    p.add_argument("--repeat", type=int, default=1, metavar="N",
                   help="call every function N times and require identical bits (catches racy reductions)")
    p.add_argument("--batch-invariance", action="store_true",
                   help="require a sample's output not to depend on the rest of the batch")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--traceback", action="store_true",
                   help="on an error (a backend that cannot be loaded, a missing corpus) print the full traceback "
                        "instead of one line")
    p.set_defaults(func=run_check)
    return p


def backend_and_xfails(args):
    """The backend ``args.backend`` names, the xfail file that applies (``--xfail``, else the
    shipped file of a built-in backend, none with ``--no-xfail``) and its rules."""
    backend = load_backend(args.backend)
    xfail_path = None if args.no_xfail else (args.xfail or default_xfails(args.backend))
    return backend, xfail_path, (read_xfails(xfail_path) if xfail_path else [])


def run_check(args) -> int:
    backend, xfail_path, xfails = backend_and_xfails(args)
    with Progress("check " + args.backend, enabled=not args.quiet) as bar:
        report = check(backend, backend_name=args.backend, ops=_csv(args.ops), dtypes=_csv(args.dtypes),
                       tiers=_csv(args.tiers), root=args.golden_dir, xfails=xfails, repeat=args.repeat,
                       batch_invariance=args.batch_invariance, progress=bar.update)
    print(f"backend {args.backend}" + (f" (xfail file {xfail_path})" if xfail_path else ""))
    print(table(report))
    bad = failures(report, json_path=args.json)
    if bad:
        print(bad)
    if args.json:
        Path(args.json).write_text(json.dumps(report.to_json(), indent=1, sort_keys=True) + "\n", encoding="utf-8")
    if not report.outcomes:
        print("no golden case matched the selection", file=sys.stderr)
        return 1
    return 0 if report.ok else 1
