"""refnorm's Sphinx extension: everything in the docs that is data, generated at build time.

At ``builder-inited`` it writes Markdown (MyST) fragments into ``docs/_generated/``,
which the pages pull in with ``{include}``:

* ``golden/<op>.md``     the op's golden cases, one row per case id, read from
                         ``spec/golden/manifest.json`` ("no golden cases yet"
                         when the manifest has none for the op);
* ``golden/summary.md``  cases per op, tier and expected kind;
* ``tolerance.md``       the tolerance model's constants and the manifest's
                         tolerances of representative cases;
* ``mutants.md``         the deliberately buggy backends the suite must catch;
* ``check_report.md``    the real output of ``refnorm check`` on one of them;
* ``cli.md``             ``--help`` of ``refnorm`` and of every subcommand, from
                         :func:`refnorm.cli.build_parser`;
* ``api.md``             the autodoc directives of the API page, from
                         ``refnorm.__all__`` and the seed modules' ``__all__``;
* ``papers.md`` and ``papers/<module>/*.png``  the reproduced paper plots: each
  ``examples/papers/<module>.py`` is imported and its figures written (see
  :func:`paper_figures`).

Files are rewritten only when their content changes, so incremental builds
stay incremental.  Nothing here is typed by hand: a number on a page that
comes from the code is computed from the code.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import inspect
import math
import os
import re
import shutil
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

from sphinx.errors import ExtensionError
from sphinx.util import logging

logger = logging.getLogger(__name__)

DOCS = Path(__file__).resolve().parents[1]
ROOT = DOCS.parent
GENERATED = DOCS / "_generated"

#: examples/papers/<name>.py, in page order.
PAPER_EXAMPLES = ("collapse", "signal_propagation")


def seed_modules() -> tuple[str, ...]:
    """Modules documented as a whole on the API page (their objects are canonical
    there): the seed layers' (from the registry records marked ``seed``), then the gains."""
    from refnorm import registry

    return tuple(spec.forward.__module__ for spec in registry().values() if spec.seed) + ("refnorm.ops.gains",)


# ----------------------------------------------------------------------------- helpers


def _write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` unless it already holds exactly that."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return
    path.write_text(text, encoding="utf-8")


_PUNCT = re.compile(r"([!-/:-@\[-`{-~])")


def md(text) -> str:
    """``text`` as literal Markdown: every ASCII punctuation character
    backslash-escaped (CommonMark allows this for all of them), so no ``*``,
    ``_``, ``|``, ``$`` or ``<`` in a description is ever markup."""
    return _PUNCT.sub(r"\\\1", str(text)).replace("\n", " ")


def _shape(s) -> str:
    return "()" if len(s) == 0 else "×".join(str(int(d)) for d in s)


def _g(x: float) -> str:
    return f"{x:.3g}"


# ----------------------------------------------------------------------------- golden cases


def _manifest():
    from refnorm.golden.locations import default_root
    from refnorm.golden.manifest import load_manifest

    root = default_root()
    return root, load_manifest(root)


def golden_tables(manifest) -> None:
    from refnorm import registry

    cases_by_op = defaultdict(list)
    for c in manifest["cases"]:
        cases_by_op[c["op"]].append(c)
    ops = list(registry()) + sorted(set(cases_by_op) - set(registry()))
    for op in ops:
        cases = sorted(cases_by_op.get(op, []), key=lambda c: c["id"])
        if not cases:
            text = (f"*No golden cases yet* for `{op}`: `spec/golden/manifest.json` "
                    f"(refnorm {manifest.get('refnorm_version', '?')}) has no case whose op is `{op}`. "
                    "This table is generated at build time and fills in when the corpus gains them.\n")
            _write(GENERATED / "golden" / f"{op}.md", text)
            continue
        tiers = Counter(c["tier"] for c in cases)
        kinds = Counter(c["expect"]["kind"] for c in cases)
        dtypes = Counter(c["dtype"] for c in cases)
        lines = [
            f"{len(cases)} cases (" + ", ".join(f"{n} {t}" for t, n in sorted(tiers.items())) + "; "
            + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) + "; "
            + ", ".join(f"{n} {d}" for d, n in sorted(dtypes.items())) + "), "
            f"generated from `spec/golden/manifest.json` (refnorm {manifest.get('refnorm_version', '?')}). "
            "Shapes are those of the inputs; the expected kind is `value` (compare), `nan` (NaN exactly where "
            "the reference has it) or `error` (the op must refuse the inputs).",
            "",
            "| id | tier | dtype | shapes | description | expected |",
            "|---|---|---|---|---|---|",
        ]
        for c in cases:
            shapes = "; ".join(f"{k} {_shape(v)}" for k, v in c["shapes"].items())
            exp = c["expect"]
            kind = exp["kind"] + (f" ({exp['type']})" if exp["kind"] == "error" and "type" in exp else "")
            lines.append(f"| `{c['id']}` | {c['tier']} | {c['dtype']} | {md(shapes)} | {md(c['description'])} "
                         f"| {md(kind)} |")
        _write(GENERATED / "golden" / f"{op}.md", "\n".join(lines) + "\n")

    rows = ["| op | cases | exact | statistical | adversarial | value | nan | error |", "|---|---|---|---|---|---|---|---|"]
    for op in ops:
        cs = cases_by_op.get(op, [])
        t = Counter(c["tier"] for c in cs)
        k = Counter(c["expect"]["kind"] for c in cs)
        rows.append(f"| `{op}` | {len(cs)} | {t['exact']} | {t['statistical']} | {t['adversarial']} | {k['value']} "
                    f"| {k['nan']} | {k['error']} |")
    rows.append(f"| all | {len(manifest['cases'])} | | | | | | |")
    _write(GENERATED / "golden" / "summary.md", "\n".join(rows) + "\n")


# ----------------------------------------------------------------------------- tolerance numbers


def _pick(cases, preferred: str, op: str, dtype: str, tier: str):
    by_id = {c["id"]: c for c in cases}
    if preferred in by_id:
        return by_id[preferred]
    for c in cases:
        if c["op"] == op and c["dtype"] == dtype and c["tier"] == tier and c["expect"]["kind"] == "value":
            return c
    return None


def tolerance_tables(manifest) -> None:
    from refnorm.golden import tolerance as T
    from refnorm.golden.dtypes import DTYPE_NAMES

    out = ["| dtype | unit roundoff `u_out` | accumulation `u_acc` | `u_ref` | safety `c` | λ |",
           "|---|---|---|---|---|---|"]
    for d in DTYPE_NAMES:
        uo, ua = T.unit_roundoff(d), T.acc_roundoff(d)
        out.append(f"| {d} | 2^{round(math.log2(uo))} = {_g(uo)} | "
                   f"2^{round(math.log2(ua))} = {_g(ua)} | {_g(T.U_REF)} | {T.SAFETY:g} | {T.LAMBDA:g} |")
    out += ["", "Growth of a sum of K terms: the probabilistic `f(K) = λ√K + 1` the model uses, next to the "
                "worst-case `K − 1`:", "", "| K | f(K) | K − 1 | (K − 1)/f(K) |", "|---|---|---|---|"]
    for K in (16, 768, 4096, 65536, 1 << 20):
        f = T.growth(K)
        out.append(f"| {K} | {_g(f)} | {K - 1} | {_g((K - 1) / f)} |")
    out += ["", "Tolerances of one statistical case per dtype (`layer_norm/d768_weight`, 4 rows of 768), read "
                "from the committed manifest; the `derivation` string of every tolerance carries its inputs "
                "(K, f(K), κ, eps_m, eps_r):", "",
            "| case | output | atol | rtol | ulp | scale |", "|---|---|---|---|---|---|"]
    cases = manifest["cases"]
    shown = []
    for d in DTYPE_NAMES:
        c = _pick(cases, f"layer_norm/d768_weight__{d}", "layer_norm", d, "statistical")
        if c is None:
            continue
        shown.append(c)
        for name, t in sorted(c["tolerances"].items()):
            out.append(f"| `{c['id']}` | `{name}` | {_g(t['atol'])} | {_g(t['rtol'])} | "
                       f"{'' if t['ulp'] is None else t['ulp']} | {t['scale']} |")
    c = _pick(cases, "layer_norm/exact_d16_affine__float32", "layer_norm", "float32", "exact")
    if c is not None:
        out += ["", f"The exact tier (`{c['id']}`): statistics bitwise, `y` and `dx` within 1 ulp of the case "
                    "dtype:", "", "| output | atol | rtol | ulp |", "|---|---|---|---|"]
        for name, t in sorted(c["tolerances"].items()):
            out.append(f"| `{name}` | {_g(t['atol'])} | {_g(t['rtol'])} | {t['ulp']} |")
    if shown:
        c = shown[-1]
        out += ["", f"For example, the derivation recorded for `{c['id']}` output `dx`:", "",
                "```text", c["tolerances"]["dx"]["derivation"].replace("; ", ";\n"), "```"]
    _write(GENERATED / "tolerance.md", "\n".join(out) + "\n")


def mutants_table() -> None:
    from refnorm.conformance.mutants import MUTANTS

    rows = ["| mutant | the bug |", "|---|---|"]
    for name, what in MUTANTS.items():
        rows.append(f"| `mutant:{name}` | {md(what)} |")
    _write(GENERATED / "mutants.md", "\n".join(rows) + "\n")


def check_report() -> None:
    """The real output of ``refnorm check`` on a buggy backend, for the conformance page."""
    import io

    from refnorm.cli import main

    argv = ["check", "--backend", "mutant:one_pass_variance", "--ops", "layer_norm", "--dtypes", "float32",
            "--quiet"]
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(argv)
    lines = buf.getvalue().rstrip().splitlines()
    if len(lines) > 24:
        lines = lines[:24] + [f"... ({len(lines) - 24} more lines)"]
    text = "\n".join(lines)
    _write(GENERATED / "check_report.md",
           f"```text\n$ refnorm {' '.join(argv)}\n{text}\n(exit code {rc})\n```\n")


# ----------------------------------------------------------------------------- CLI


@contextlib.contextmanager
def _env(**values):
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def cli_reference() -> None:
    import argparse

    from refnorm.cli import build_parser

    with _env(COLUMNS="100", NO_COLOR="1"):
        parser = build_parser()
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        helps = {a.dest: a.help for a in sub._choices_actions}
        out = ["These are the parser's own `--help` texts, rendered at build time from "
               "`refnorm.cli.build_parser()`; they cannot drift from the code.", "",
               "## `refnorm`", "", "````text", parser.format_help().rstrip(), "````", ""]
        for name, p in sub.choices.items():
            out += [f"## `refnorm {name}`", "", md(helps.get(name) or ""), "", "````text", p.format_help().rstrip(),
                    "````", ""]
    _write(GENERATED / "cli.md", "\n".join(out))


# ----------------------------------------------------------------------------- API page


def _directive(name: str, arg: str, **options) -> list[str]:
    """An autodoc directive inside ``{eval-rst}`` (autodoc emits reST, which MyST must not parse)."""
    lines = ["```{eval-rst}", f".. {name}:: {arg}"]
    for k, v in options.items():
        lines.append(f"   :{k}:" + ("" if v is True else f" {v}"))
    return lines + ["```", ""]


def api_reference() -> None:
    import refnorm

    out = ["## `refnorm`: the standard normalizers", ""]
    out += _directive("automodule", "refnorm", **{"no-members": True})
    pointers = []
    for name in refnorm.__all__:
        obj = getattr(refnorm, name)
        mod = getattr(obj, "__module__", "")
        if name == "__version__":
            out += ["```{py:data} __version__", ":module: refnorm", f":value: {obj!r}", "",
                    "The version of this refnorm (also `refnorm --version` and the manifest's `refnorm_version`).",
                    "```", ""]
        elif mod in seed_modules():
            pointers.append(f"* `refnorm.{name}` is {{py:obj}}`{mod}.{name}`")
        elif inspect.isclass(obj):
            out += _directive("autoclass", f"refnorm.{name}", members=True)
        else:
            out += _directive("autofunction", f"refnorm.{name}")
    out += _directive("autofunction", "refnorm.ops.rms_norm.default_eps")
    if pointers:
        out += ["Seed layers also exported at the top level (documented with their modules below):", ""]
        out += pointers + [""]
    out += ["## The seed layers", ""]
    for mod in seed_modules():
        m = importlib.import_module(mod)
        out += [f"### `{mod}`", ""]
        out += _directive("automodule", mod, members=", ".join(getattr(m, "__all__", [])) or True)
    out += ["## Golden fixtures: `refnorm.golden`", ""]
    out += _directive("automodule", "refnorm.golden", members=True)
    out += _directive("autofunction", "refnorm.golden.corpus.iter_entries")
    out += _directive("autofunction", "refnorm.golden.corpus.default_root")
    out += ["### `refnorm.golden.tolerance`", "",
            "The module docstring (the derivation) is rendered on "
            "[Writing a conformant kernel](conformance.md#the-tolerance-model).", ""]
    out += _directive("autofunction", "refnorm.golden.tolerance.tolerances")
    out += _directive("autofunction", "refnorm.golden.tolerance.compare")
    out += _directive("autoclass", "refnorm.golden.tolerance.Comparison")
    out += ["## Conformance: `refnorm.conformance`", ""]
    out += _directive("automodule", "refnorm.conformance", **{"no-members": True})
    out += _directive("autofunction", "refnorm.conformance.harness.check")
    out += _directive("autofunction", "refnorm.conformance.harness.check_case")
    out += _directive("autofunction", "refnorm.conformance.harness.check_function")
    out += _directive("autofunction", "refnorm.conformance.harness.read_xfails")
    out += _directive("autoclass", "refnorm.conformance.harness.Report", members="ok, unexpected, counts, to_json")
    out += _directive("autoclass", "refnorm.conformance.harness.Outcome")
    out += _directive("autofunction", "refnorm.conformance.backends.load_backend")
    out += _directive("autofunction", "refnorm.conformance.mutants.load_mutant")
    out += ["### The pytest plugin", ""]
    out += _directive("automodule", "refnorm.conformance.plugin", **{"no-members": True})
    out += _directive("autofunction", "refnorm.conformance.plugin.golden_cases")
    out += ["```{py:function} refnorm_backend()", ":module: refnorm.conformance.plugin", "",
            "pytest fixture: the backend module named by `--refnorm-backend` (the test is skipped when the "
            "option is not given).", "```", ""]
    out += ["## Command line: `refnorm.cli`", ""]
    out += _directive("autofunction", "refnorm.cli.build_parser")
    out += _directive("autofunction", "refnorm.cli.main")
    _write(GENERATED / "api.md", "\n".join(out))


# ----------------------------------------------------------------------------- paper plots


def _source_digest(paths) -> str:
    h = hashlib.sha256()
    for p in paths:
        p = Path(p)
        h.update(str(p).encode())
        h.update(p.read_bytes() if p.exists() else b"<missing>")
    return h.hexdigest()


def _first_paragraph(doc: str | None) -> str:
    if not doc:
        return ""
    return inspect.cleandoc(doc).split("\n\n", 1)[0].replace("\n", " ")


def _run_paper_example(name: str, module, out_dir: Path) -> tuple[list[Path], str]:
    """Have ``module`` write its figures into ``out_dir``; return the PNGs and what it printed.

    Protocol, in order: ``main(argv)`` called as ``main([out_dir / "<name>.png"])``
    (the examples' command line: the positional argument is the PNG path); a
    function ``write_figures(out_dir)``; otherwise the module's ``__main__``
    block, run with ``sys.argv = [file, out_dir / "<name>.png"]`` and the
    output directory as working directory.  PNGs the run leaves next to the
    module (newer than the start of the run) are moved into ``out_dir`` too.
    """
    import io
    import runpy

    os.environ.setdefault("MPLBACKEND", "Agg")
    out_dir.mkdir(parents=True, exist_ok=True)
    src = Path(module.__file__).resolve()
    png = out_dir / f"{name}.png"
    start = time.time() - 1.0
    buf = io.StringIO()
    old_cwd, old_argv = os.getcwd(), sys.argv
    try:
        os.chdir(out_dir)
        with contextlib.redirect_stdout(buf):
            if callable(getattr(module, "main", None)):
                rc = module.main([str(png)])
                if rc not in (0, None):
                    raise RuntimeError(f"main() returned {rc!r}")
            elif callable(getattr(module, "write_figures", None)):
                module.write_figures(out_dir)
            else:
                sys.argv = [str(src), str(png)]
                runpy.run_path(str(src), run_name="__main__")
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise
    finally:
        os.chdir(old_cwd)
        sys.argv = old_argv
    for stray in list(src.parent.glob("*.png")) + list(src.parent.glob("*/*.png")):
        if stray.stat().st_mtime >= start and out_dir not in stray.parents:
            shutil.move(str(stray), out_dir / stray.name)
    printed = "\n".join(line for line in buf.getvalue().splitlines() if not line.startswith("wrote "))
    return sorted(out_dir.glob("*.png")), printed.strip()


def paper_figures(app) -> None:
    required = bool(app.config.refnorm_papers_required)
    have_analysis = importlib.util.find_spec("refnorm.analysis") is not None
    papers_dir = ROOT / "examples" / "papers"
    missing = [n for n in PAPER_EXAMPLES if not (papers_dir / f"{n}.py").exists()]
    if required and (missing or not have_analysis):
        what = [f"examples/papers/{n}.py" for n in missing] + ([] if have_analysis else ["refnorm/analysis.py"])
        raise ExtensionError(
            "refnorm docs: 'What the papers found' needs " + ", ".join(what) + ", which do not exist. "
            "refnorm_papers_required is True (docs/conf.py or REFNORM_DOCS_PAPERS_REQUIRED=1), so the paper "
            "plots are expected; add the modules or set it to False.")
    out = []
    if have_analysis:
        out += ["## The diagnostics: `refnorm.analysis`", ""]
        out += _directive("automodule", "refnorm.analysis", members=True)
    else:
        out += ["```{note}", "`refnorm.analysis` (the diagnostics of the papers) is not in this checkout yet; "
                "its API appears here once it is.", "```", ""]
    out += ["## Reproduced plots", ""]
    for name in PAPER_EXAMPLES:
        path = papers_dir / f"{name}.py"
        if not path.exists():
            out += ["```{note}", f"`examples/papers/{name}.py` is not in this checkout yet: its plots will be "
                    "generated here at build time once it is.", "```", ""]
            continue
        modname = f"examples.papers.{name}"
        try:
            module = importlib.import_module(modname)
        except Exception as exc:
            raise ExtensionError(f"refnorm docs: importing examples/papers/{name}.py failed: "
                                 f"{type(exc).__name__}: {exc}") from exc
        fig_dir = GENERATED / "papers" / name
        deps = [path, ROOT / "refnorm" / "analysis.py", ROOT / "refnorm" / "_version.py"]
        digest = _source_digest(deps)
        stamp, printed_file = fig_dir / ".stamp", fig_dir / "printed.txt"
        pngs = sorted(fig_dir.glob("*.png"))
        if pngs and stamp.exists() and stamp.read_text() == digest and printed_file.exists():
            printed = printed_file.read_text()
        else:
            if fig_dir.exists():
                shutil.rmtree(fig_dir)
            logger.info(f"[refnorm docs] running examples/papers/{name}.py for its figures ...")
            t0 = time.perf_counter()
            try:
                pngs, printed = _run_paper_example(name, module, fig_dir)
            except Exception as exc:
                raise ExtensionError(f"refnorm docs: examples/papers/{name}.py failed while writing its figures: "
                                     f"{type(exc).__name__}: {exc}") from exc
            logger.info(f"[refnorm docs] {name}: {len(pngs)} figure(s) in {time.perf_counter() - t0:.1f} s")
            _write(printed_file, printed)
            _write(stamp, digest)
        out += [f"### `examples/papers/{name}.py`", ""]
        if not pngs:
            msg = (f"examples/papers/{name}.py wrote no PNG (protocol: main([png_path]), write_figures(out_dir), "
                   "or a __main__ block writing the PNG named by sys.argv[1])")
            if required:
                raise ExtensionError("refnorm docs: " + msg)
            out += ["```{note}", md(msg), "```", ""]
        for png in pngs:
            rel = png.relative_to(DOCS).as_posix()
            out += [f"```{{figure}} /{rel}", ":width: 100%", "",
                    f"Generated at build time by `examples/papers/{name}.py` (`{png.name}`).", "```", ""]
        if printed:
            out += ["What the run printed:", "", "````text", printed, "````", ""]
        out += _directive("automodule", modname, members=True)
    _write(GENERATED / "papers.md", "\n".join(out))


# ----------------------------------------------------------------------------- docstring rendering

# |...| that reST would read as a substitution reference: the opening bar after
# whitespace or an opening bracket, non-space text, the closing bar after non-space.
_ABS = re.compile(r"(?<![^\s(\[{'\"<])\|(?=[^\s|])([^|`]*?[^\s\\|])\|")
_CODE = re.compile(r"(``.*?``|`[^`]*`)")
_BORDER = re.compile(r"^\s*=+(\s+=+)+\s*$")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _table_is_valid(block: list[str]) -> bool:
    from docutils import nodes
    from docutils.core import publish_doctree

    text = inspect.cleandoc("\n".join(block))
    doctree = publish_doctree(text, settings_overrides={"report_level": 5, "halt_level": 5, "warning_stream": False})
    return not any(m["level"] >= 3 for m in doctree.findall(nodes.system_message))


def _literal_malformed_tables(lines: list[str]) -> None:
    """A simple table whose text overruns its column borders is not valid reST;
    show it as the ASCII table it is (a literal block) instead of failing."""
    i = 0
    while i < len(lines):
        if not _BORDER.match(lines[i]):
            i += 1
            continue
        j = i + 1
        while j < len(lines) and not (_BORDER.match(lines[j]) and (j + 1 == len(lines) or not lines[j + 1].strip())):
            j += 1
        if j >= len(lines):
            return
        block = lines[i:j + 1]
        if not _table_is_valid(block):
            base = " " * _indent(lines[i])
            lines[i:j + 1] = [base + "::", ""] + [base + "    " + line[len(base):] if line.strip() else ""
                                                  for line in block]
            j = i + len(block) + 1
        i = j + 1


def process_docstring(app, what, name, obj, options, lines) -> None:
    """Docs-side fixes of refnorm's plain-text docstring habits (the docstrings
    stay as written): absolute values written ``|a - e|`` would be read by reST
    as substitution references, and an ASCII table that overruns its column
    borders is not a valid simple table.  Bars are escaped outside literals,
    roles and ``::`` blocks; such tables become literal blocks."""
    if not name.startswith(("refnorm", "examples")):
        return
    _literal_malformed_tables(lines)
    skip_indent = None  # inside a literal/math block opened by a line ending in "::"
    in_literal = False  # inside an inline ``literal`` that continues on the next line
    for i, line in enumerate(lines):
        if not line.strip():
            in_literal = False
        if skip_indent is not None:
            if line.strip() and _indent(line) <= skip_indent:
                skip_indent = None
            else:
                continue
        if line.rstrip().endswith("::"):
            skip_indent = _indent(line)
        if line.lstrip().startswith(("|", "+")):
            in_literal ^= line.count("``") % 2 == 1
            continue
        out = []
        for k, part in enumerate(line.split("``")):
            if k > 0:
                in_literal = not in_literal
            if in_literal or "|" not in part:
                out.append(part)
            else:
                out.append("".join(p if p.startswith("`") else _ABS.sub(r"\\|\1\\|", p) for p in _CODE.split(part)))
        lines[i] = "``".join(out)


# ----------------------------------------------------------------------------- wiring


def generate(app) -> None:
    t0 = time.perf_counter()
    GENERATED.mkdir(exist_ok=True)
    _, manifest = _manifest()
    golden_tables(manifest)
    tolerance_tables(manifest)
    mutants_table()
    check_report()
    cli_reference()
    api_reference()
    paper_figures(app)
    logger.info(f"[refnorm docs] generated docs/_generated in {time.perf_counter() - t0:.1f} s")


def setup(app):
    app.add_config_value("refnorm_papers_required", False, "env", types=[bool])
    app.connect("builder-inited", generate)
    app.connect("autodoc-process-docstring", process_docstring)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
