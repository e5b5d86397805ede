"""The ``refnorm`` command line: ``refnorm list | generate | verify | case | check``.

Each subcommand is registered by an ``add_<name>_parser(subparsers)``
function that sets ``func`` (``args -> exit code``) as its default; a new
subcommand is one more entry in :data:`SUBCOMMANDS` (or, for one living in
another module, in :data:`OPTIONAL_SUBCOMMANDS`).
"""

from __future__ import annotations

import argparse
import importlib
import json
import shlex
import sys
import time
import traceback
from pathlib import Path

from ._progress import Progress
from ._registry import registry
from ._version import __version__
from .conformance.backends import BackendLoadError
from .golden import catalogue
from .golden.casespec import TIERS
from .golden.corpus import generate, verify, write_cases
from .golden.locations import LOCAL_CORPUS, default_out, default_root
from .golden.manifest import MANIFEST_NAME
from .golden.reader import iter_entries
from .golden.safetensors import GoldenFormatError
from .golden.selection import SelectionError, as_list, choices, selected
from .golden.usercase import SUFFIXES, case_from_tensors, describe_tensors, load_tensors


def _csv(values):
    """``--ops a b,c`` -> ``["a", "b", "c"]``; nothing given -> None (all)."""
    if not values:
        return None
    out = []
    for v in values:
        out.extend(s for s in v.split(",") if s)
    return out


def known(what: str):
    """An argparse ``type`` accepting names of ``what`` ("op", "dtype", "tier"):
    one that is not known is a usage error (exit 2) listing the known ones."""
    def check(value: str) -> str:
        try:
            names = as_list(value, what, choices(what))
        except SelectionError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
        if not names:
            raise argparse.ArgumentTypeError(f"{value!r} names no {what}")
        return value
    return check


def _add_filters(p) -> None:
    """Add ``--ops``, ``--dtypes`` and ``--tiers`` to ``p``, each value checked
    as it is parsed (:func:`known`)."""
    for what in ("op", "dtype", "tier"):
        p.add_argument(f"--{what}s", nargs="+", type=known(what), metavar=what.upper(),
                       help=f"{what}s to include: {' '.join(choices(what))} (default: all)")


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
    ops, dtypes, tiers = _csv(args.ops), _csv(args.dtypes), _csv(args.tiers)  # checked by the parser
    specs = [s for s in catalogue.catalogue(include_large=args.large) if selected(s, ops, dtypes, tiers)]
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
    p.add_argument("--out", metavar="DIR", help="corpus directory (default: $REFNORM_GOLDEN_DIR; else in a checkout "
                                                "the committed spec/golden, in an installed package "
                                                "./refnorm-golden)")
    _add_filters(p)
    p.add_argument("--large", action="store_true", help="include the large cases")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_generate)
    return p


def run_generate(args) -> int:
    ops, dtypes, tiers = _csv(args.ops), _csv(args.dtypes), _csv(args.tiers)
    out = Path(args.out) if args.out else default_out()
    local = args.out is None and out.name == LOCAL_CORPUS and out.parent == Path.cwd()
    if args.out is None and not local and (ops or dtypes or tiers):
        print(f"refnorm generate: error: --ops/--dtypes/--tiers would replace the whole corpus {out} with a "
              "subset; pass --out DIR to write a partial corpus elsewhere", file=sys.stderr)
        return 2
    with Progress("generate", enabled=not args.quiet) as bar:
        stats = generate(out, ops=ops, dtypes=dtypes, tiers=tiers, include_large=args.large,
                         progress=bar.update)
    per_op = ", ".join(f"{op} {n}" for op, n in sorted(stats.by_op.items()))
    print(f"wrote {stats.cases} cases ({per_op}), {stats.bytes / 2**20:.2f} MiB, in {stats.seconds:.1f} s "
          f"to {stats.out_dir}")
    if local:
        print(f"(the installed corpus is read-only package data; use this one with --golden-dir {LOCAL_CORPUS} "
              f"or REFNORM_GOLDEN_DIR={out})")
    return 0


# ----------------------------------------------------------------------------- verify


def add_verify_parser(subparsers):
    p = subparsers.add_parser("verify", help="check a corpus: hashes, headers, values bit for bit",
                              description="Re-hash every file of a corpus, check it against the manifest, and "
                                          "recompute every expected value from the stored inputs bit for bit. "
                                          "Prints one line per bad file and exits 1 if there is any.")
    p.add_argument("dir", nargs="?", metavar="DIR",
                   help="corpus directory (default: $REFNORM_GOLDEN_DIR, else the committed or installed corpus)")
    p.add_argument("--golden-dir", metavar="DIR", help="the same as DIR (the option every command takes)")
    _add_filters(p)
    p.add_argument("--no-recompute", action="store_true",
                   help="check hashes and headers only, do not recompute values")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_verify)
    return p


def run_verify(args) -> int:
    if args.dir and args.golden_dir and Path(args.dir) != Path(args.golden_dir):
        print(f"refnorm verify: error: DIR {args.dir!r} and --golden-dir {args.golden_dir!r} name different "
              "corpora; give one", file=sys.stderr)
        return 2
    given = args.dir or args.golden_dir
    root = Path(given) if given else default_root()
    t0 = time.perf_counter()
    with Progress("verify", enabled=not args.quiet) as bar:
        problems = verify(root, recompute=not args.no_recompute, progress=bar.update, ops=_csv(args.ops),
                          dtypes=_csv(args.dtypes), tiers=_csv(args.tiers))
    for p in problems:
        print(f"BAD {root / p.file}: {p.reason}")
    if problems:
        files = len({p.file for p in problems})
        print(f"{files} bad file(s) in {root}", file=sys.stderr)
        return 1
    n = len(iter_entries(root, ops=_csv(args.ops), dtypes=_csv(args.dtypes), tiers=_csv(args.tiers)))
    print(f"ok: {n} cases in {root} verified in {time.perf_counter() - t0:.1f} s")
    return 0


# ----------------------------------------------------------------------------- case

#: Where ``refnorm case`` writes when no ``--out`` is given (relative to the working directory).
CASE_OUT = "refnorm-cases"


def add_case_parser(subparsers):
    p = subparsers.add_parser(
        "case", help="turn your own tensors into a golden case",
        description="Make a golden case from your own tensors (a production trace, a batch that broke a kernel): "
                    "refnorm computes the expected outputs from exactly those tensors in float64 and derives "
                    "their tolerances from the data, then adds the case to a corpus directory that "
                    "'refnorm check --backend SPEC --golden-dir DIR' replays against any backend.")
    p.add_argument("--op", required=True, metavar="OP", help=f"the op: {' '.join(registry())}")
    p.add_argument("--inputs", required=True, metavar="FILE",
                   help=f"a {' or '.join(SUFFIXES)} file of tensors named like the op's arguments (x, weight, "
                        "bias, running_mean, residual, ...), cotangents (dy; fused ops dh), tangents (tx, "
                        "tweight, ...) or second-order cotangents (ddx, ...); float64, float32, float16 or "
                        "bfloat16 (bfloat16 in .safetensors only). The case dtype is x's (weight standardization: "
                        "weight's); parameters may have their own dtype")
    p.add_argument("--attrs", metavar="JSON",
                   help='the op\'s other arguments as a JSON object, e.g. \'{"normalized_shape": [768], '
                        '"eps": 1e-5}\', or @FILE.json to read it from a file (default: none; an argument '
                        "left out takes the forward's default)")
    p.add_argument("--name", default="user",
                   help="the case name, letters, digits and _: the case id is OP/NAME__DTYPE (default: user)")
    p.add_argument("--out", metavar="DIR", default=CASE_OUT,
                   help="the corpus directory to add the case to, created if needed; a case with the same id "
                        f"is replaced, the others are kept (default: ./{CASE_OUT})")
    p.add_argument("--traceback", action="store_true", help="on an error, print the full traceback")
    p.set_defaults(func=run_case)
    return p


def _attrs_argument(text: str | None) -> dict | None:
    """``--attrs``: a JSON object, or ``@FILE`` holding one."""
    if text is None:
        return None
    where = "--attrs"
    if text.startswith("@"):
        path = Path(text[1:])
        if not path.is_file():
            raise ValueError(f"--attrs {text}: no such file {str(path)!r}")
        text, where = path.read_text(encoding="utf-8"), f"--attrs file {str(path)!r}"
    try:
        attrs = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{where} is not valid JSON ({e}); expected an object such as "
                         '\'{"normalized_shape": [768], "eps": 1e-5}\'') from None
    if not isinstance(attrs, dict):
        raise ValueError(f"{where} must be a JSON object of argument -> value, got a JSON {type(attrs).__name__}")
    return attrs


def _tolerance_text(tol: dict) -> str:
    """One tolerance in a few words: ``atol 1.2e-07 + rtol 3.4e-06 x scale tensor``."""
    if tol["atol"] == 0 and tol["rtol"] == 0 and not tol.get("ulp"):
        return "bitwise"
    scale = "|expected|" if tol["scale"] == "expected" else "scale tensor"
    text = f"atol {tol['atol']:.3g} + rtol {tol['rtol']:.3g} x {scale}"
    return text + (f", or {tol['ulp']} ulp" if tol.get("ulp") else "")


def run_case(args) -> int:
    try:
        attrs = _attrs_argument(args.attrs)
        path = Path(args.inputs)
        if not path.is_file():
            raise FileNotFoundError(f"--inputs {args.inputs}: no such file")
        tensors = load_tensors(path)
        built = case_from_tensors(args.op, tensors, attrs, name=args.name,
                                  description=f"{path.name}: {describe_tensors(tensors)}")
    except (ValueError, TypeError, OSError) as e:  # the user's input: a usage error
        if args.traceback:
            traceback.print_exc()
        else:
            print(f"refnorm case: error: {e}", file=sys.stderr)
        return 2
    spec = built.spec
    out = Path(args.out)
    replaced = (out / f"{spec.id}.safetensors").is_file()
    write_cases(out, [built])
    print(f"case {spec.id} ({spec.tier}; {describe_tensors(built.inputs)})")
    if spec.expect["kind"] == "nan":
        print(f"  expects {spec.expect['where']}")
    width = max(len(k) for k in built.expected)
    for name, e in built.expected.items():
        print(f"  {name:<{width}}  {str(list(e.shape)):<14}  {_tolerance_text(built.tolerances[name])}")
    print(f"{'replaced' if replaced else 'wrote'} {(out / spec.id).absolute()}.safetensors "
          f"and {(out / MANIFEST_NAME).absolute()}")
    print(f"replay: refnorm check --backend SPEC --golden-dir {shlex.quote(str(out))}")
    print("  (SPEC: a built-in backend such as torch, jax or onnxruntime, a file my_kernels.py or a module path)")
    return 0


# ----------------------------------------------------------------------------- the parser

#: Built-in subcommands, in help order.
SUBCOMMANDS = [add_list_parser, add_generate_parser, add_verify_parser, add_case_parser]
#: ``(module, function)`` of subcommands that live elsewhere; skipped if the module is absent.
OPTIONAL_SUBCOMMANDS = [("refnorm.conformance.cli_check", "add_check_parser"),
                        ("refnorm.conformance.cli_fuzz", "add_fuzz_parser")]


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
    """Run the command line; return the exit code (0 ok, 1 failure, 2 usage error).

    A usage error -- bad arguments, an unknown op/dtype/tier, a backend that
    cannot be loaded -- and an expected failure (a missing or damaged corpus, a
    selection that matches nothing) print one line, ``refnorm <command>: error:
    <message>``, on stderr; a command with ``--traceback`` prints the full
    traceback instead.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except (BackendLoadError, GoldenFormatError, SelectionError, FileExistsError, FileNotFoundError) as e:
        if getattr(args, "traceback", False):
            traceback.print_exc()
        else:
            print(f"refnorm {args.command}: error: {e}", file=sys.stderr)
        return 2 if isinstance(e, BackendLoadError) else 1
    except KeyboardInterrupt:
        print(f"refnorm {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
