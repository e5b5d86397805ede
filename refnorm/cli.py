"""The ``refnorm`` command line: ``refnorm list | generate | verify | check``.

Each subcommand is registered by an ``add_<name>_parser(subparsers)``
function that sets ``func`` (``args -> exit code``) as its default; a new
subcommand is one more entry in :data:`SUBCOMMANDS` (or, for one living in
another module, in :data:`OPTIONAL_SUBCOMMANDS`).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

from ._version import __version__


def _csv(values):
    """``--ops a b,c`` -> ``["a", "b", "c"]``; nothing given -> None (all)."""
    if not values:
        return None
    out = []
    for v in values:
        out.extend(s for s in v.split(",") if s)
    return out


def _add_filters(p) -> None:
    p.add_argument("--ops", nargs="+", metavar="OP", help="ops to include (default: all)")
    p.add_argument("--dtypes", nargs="+", metavar="DTYPE",
                   help="dtypes to include: float64 float32 float16 bfloat16 (default: all)")
    p.add_argument("--tiers", nargs="+", metavar="TIER",
                   help="tiers to include: exact statistical adversarial (default: all)")


# ----------------------------------------------------------------------------- list


def add_list_parser(subparsers):
    p = subparsers.add_parser("list", help="list the case catalogue",
                              description="List the ops and cases of the golden-case catalogue: one line per op, "
                                          "one line per case (id, tier, description), then the counts.")
    _add_filters(p)
    p.add_argument("--large", action="store_true", help="include the large cases")
    p.set_defaults(func=run_list)
    return p


def run_list(args) -> int:
    from .golden.corpus import _as_list, _catalogue, _selected
    from .golden.manifest import DTYPE_NAMES, TIERS

    ops = _as_list(_csv(args.ops), "op")
    dtypes = _as_list(_csv(args.dtypes), "dtype", DTYPE_NAMES)
    tiers = _as_list(_csv(args.tiers), "tier", TIERS)
    specs = [s for s in _catalogue(args.large) if _selected(s, ops, dtypes, tiers)]
    by_op: dict[str, list] = {}
    for s in specs:
        by_op.setdefault(s.op, []).append(s)
    width = max((len(s.id) for s in specs), default=0)
    for op in sorted(by_op):
        print(f"{op} ({len(by_op[op])} cases)")
        for s in sorted(by_op[op], key=lambda s: s.id):
            large = " [large]" if getattr(s, "large", False) else ""
            print(f"  {s.id:<{width}}  {s.tier:<11}  {s.description}{large}")
    tier_counts = {t: sum(s.tier == t for s in specs) for t in TIERS}
    print(f"{len(specs)} cases in {len(by_op)} ops (" +
          ", ".join(f"{n} {t}" for t, n in tier_counts.items()) + ")")
    if not specs:
        print("no catalogue case matched the selection", file=sys.stderr)
        return 1
    return 0


# ----------------------------------------------------------------------------- generate


def add_generate_parser(subparsers):
    p = subparsers.add_parser("generate", help="write the golden corpus",
                              description="Build the selected catalogue cases into a corpus directory "
                                          "(safetensors files + manifest.json), replacing its previous content "
                                          "atomically. Filtering ops/dtypes/tiers requires --out, so that the "
                                          "committed corpus is never replaced by a subset.")
    p.add_argument("--out", metavar="DIR", help="corpus directory (default: the committed spec/golden, or "
                                                "$REFNORM_GOLDEN_DIR)")
    _add_filters(p)
    p.add_argument("--large", action="store_true", help="include the large cases")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_generate)
    return p


def run_generate(args) -> int:
    from ._progress import Progress
    from .golden.corpus import default_root, generate

    ops, dtypes, tiers = _csv(args.ops), _csv(args.dtypes), _csv(args.tiers)
    if args.out is None and (ops or dtypes or tiers):
        print("refnorm generate: error: --ops/--dtypes/--tiers would replace the whole corpus with a subset; "
              "pass --out DIR to write a partial corpus elsewhere", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else default_root()
    with Progress("generate", enabled=not args.quiet) as bar:
        stats = generate(out, ops=ops, dtypes=dtypes, tiers=tiers, include_large=args.large,
                         progress=bar.update)
    per_op = ", ".join(f"{op} {n}" for op, n in sorted(stats.by_op.items()))
    print(f"wrote {stats.cases} cases ({per_op}), {stats.bytes / 2**20:.2f} MiB, in {stats.seconds:.1f} s "
          f"to {stats.out_dir}")
    return 0


# ----------------------------------------------------------------------------- verify


def add_verify_parser(subparsers):
    p = subparsers.add_parser("verify", help="check a corpus: hashes, headers, values bit for bit",
                              description="Re-hash every file of a corpus, check it against the manifest, and "
                                          "recompute every expected value from the stored inputs bit for bit. "
                                          "Prints one line per bad file and exits 1 if there is any.")
    p.add_argument("dir", nargs="?", metavar="DIR",
                   help="corpus directory (default: the committed spec/golden, or $REFNORM_GOLDEN_DIR)")
    p.add_argument("--no-recompute", action="store_true",
                   help="check hashes and headers only, do not recompute values")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_verify)
    return p


def run_verify(args) -> int:
    from ._progress import Progress
    from .golden.corpus import default_root, verify
    from .golden.manifest import load_manifest

    root = Path(args.dir) if args.dir else default_root()
    t0 = time.perf_counter()
    with Progress("verify", enabled=not args.quiet) as bar:
        problems = verify(root, recompute=not args.no_recompute, progress=bar.update)
    for p in problems:
        print(f"BAD {root / p.file}: {p.reason}")
    if problems:
        files = len({p.file for p in problems})
        print(f"{files} bad file(s) in {root}", file=sys.stderr)
        return 1
    n = len(load_manifest(root)["cases"])
    print(f"ok: {n} cases in {root} verified in {time.perf_counter() - t0:.1f} s")
    return 0


# ----------------------------------------------------------------------------- the parser

#: Built-in subcommands, in help order.
SUBCOMMANDS = [add_list_parser, add_generate_parser, add_verify_parser]
#: ``(module, function)`` of subcommands that live elsewhere; skipped if the module is absent.
OPTIONAL_SUBCOMMANDS = [("refnorm.conformance.cli_check", "add_check_parser")]


def build_parser() -> argparse.ArgumentParser:
    """The complete ``refnorm`` argument parser (the docs render it)."""
    parser = argparse.ArgumentParser(
        prog="refnorm",
        description="refnorm: the executable specification of normalization layers and its golden corpus.")
    parser.add_argument("--version", action="version", version=f"refnorm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(sub)
    for module, name in OPTIONAL_SUBCOMMANDS:
        try:
            add = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
        add(sub)
    return parser


def main(argv=None) -> int:
    """Run the command line; return the exit code (0 ok, 1 failure, 2 usage error)."""
    from .golden.corpus import SelectionError
    from .golden.safetensors import GoldenFormatError

    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except (GoldenFormatError, SelectionError, FileExistsError, FileNotFoundError) as e:
        print(f"refnorm {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"refnorm {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
