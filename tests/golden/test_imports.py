"""How refnorm's modules import each other.

* ``refnorm.golden`` is a one-way chain: every module has a place in
  :data:`CHAIN` and imports, at its top, only modules before it; the reader's
  side (:data:`READER`) comes first and imports nothing of the generator's
  (:data:`GENERATOR`), so reading a corpus and checking outputs against it
  never imports the catalogue, the input recipes or the tolerance model.
* No function in ``refnorm`` imports a refnorm module in its body (such an
  import hides a cycle or a dependency from the reader of the module's head),
  except those of :data:`LOCAL_IMPORTS_ALLOWED`, each with its reason.
"""

from __future__ import annotations

import ast
import graphlib
import json
import subprocess
import sys
from pathlib import Path

import refnorm
import refnorm.golden

PACKAGE = Path(refnorm.__file__).resolve().parent
GOLDEN = PACKAGE / "golden"
COMMITTED = Path(__file__).resolve().parents[2] / "spec" / "golden"

#: The reader's side of refnorm.golden, in chain order: where the spec files are,
#: the dtype facts, the comparison rule, what a case is, how a case becomes a call, the corpus format, the
#: selection of cases, reading cases.
READER = ("locations", "dtypes", "comparison", "casespec", "calls", "layouts", "safetensors", "manifest", "selection",
          "reader")
#: The generator's side, in chain order: input recipes, the catalogue, the rounding
#: model, the seed layers' error bounds, the tolerance model, building a case,
#: generating and verifying a corpus, a case made from the user's own tensors.
GENERATOR = ("recipes", "catalogue", "rounding", "error_bounds", "tolerance", "build", "corpus", "usercase")
CHAIN = READER + GENERATOR

#: (file relative to refnorm/, function) -> why it may import a refnorm module in its body.
LOCAL_IMPORTS_ALLOWED = {
    ("golden/__init__.py", "__getattr__"):
        "the lazy public re-export of generate/verify/Problem (PEP 562): `import refnorm.golden` and reading a "
        "corpus must not import the generator (test_reading_a_corpus_imports_no_generator)",
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(node: ast.Import | ast.ImportFrom, path: Path) -> set[str]:
    """The dotted names of the modules (or packages) ``node`` in ``path`` imports:
    ``from package import name`` is ``package.name`` where that is a module, else
    ``package`` (whose attribute it is)."""
    if isinstance(node, ast.Import):
        return {a.name for a in node.names}
    if node.level:
        package = _module_name(path).split(".")
        if path.name != "__init__.py":
            package = package[:-1]
        base = ".".join(package[:len(package) - node.level + 1] + ([node.module] if node.module else []))
    else:
        base = node.module
    out = set()
    for a in node.names:
        sub = PACKAGE.parent.joinpath(*f"{base}.{a.name}".split("."))
        is_module = sub.with_suffix(".py").is_file() or (sub / "__init__.py").is_file()
        out.add(f"{base}.{a.name}" if is_module else base)
    return out


def _top_level_imports(path: Path) -> set[str]:
    """What the module imports when it is imported: every import statement
    outside function bodies."""
    found: set[str] = set()

    def visit(node):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found.update(_imported(child, path))
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return found


def _golden_graph() -> dict[str, set[str]]:
    """golden module -> the golden modules it imports at its top (``__init__`` for the package itself)."""
    graph = {}
    for path in sorted(GOLDEN.glob("*.py")):
        deps = set()
        for name in _top_level_imports(path):
            if name == "refnorm.golden":
                deps.add("__init__")
            elif name.startswith("refnorm.golden."):
                deps.add(name.split(".")[2])
        graph[path.stem] = deps
    return graph


def test_every_golden_module_has_a_place_in_the_chain():
    modules = {p.stem for p in GOLDEN.glob("*.py")} - {"__init__"}
    assert modules == set(CHAIN), (f"not in CHAIN: {sorted(modules - set(CHAIN))}; "
                                   f"no such module: {sorted(set(CHAIN) - modules)}")


def test_golden_import_graph_is_acyclic_and_follows_the_chain():
    graph = _golden_graph()
    order = list(graphlib.TopologicalSorter(graph).static_order())  # raises CycleError on a cycle
    assert set(order) == set(graph)
    wrong = [(m, d) for m in CHAIN for d in sorted(graph[m]) if d not in CHAIN[:CHAIN.index(m)]]
    assert not wrong, "imports against the chain (module, imported): " + ", ".join(f"{m} -> {d}" for m, d in wrong)
    # the package itself imports the reader's side only (the generator lazily, by __getattr__)
    assert graph["__init__"] <= set(READER), sorted(graph["__init__"] - set(READER))


def test_the_reader_side_imports_no_generator_module_even_indirectly():
    graph = _golden_graph()
    reached, todo = set(), ["reader", "__init__"]
    while todo:
        m = todo.pop()
        if m not in reached:
            reached.add(m)
            todo.extend(graph[m])
    assert not reached & set(GENERATOR), sorted(reached & set(GENERATOR))


def test_reading_a_corpus_imports_no_generator():
    """In a fresh interpreter: import refnorm.golden, load cases, check an output
    with ``assert_close`` (and a wrong one fails); then no module of the
    generator's side has been imported."""
    code = f"""
import json, sys
import numpy as np
import refnorm.golden
root = {str(COMMITTED)!r}
cases = refnorm.golden.load_cases(ops="layer_norm", dtypes="float32", tiers="statistical", root=root)
case = refnorm.golden.load_case(cases[0].id, root=root)
for name, expected in case.expected.items():
    case.assert_close(name, expected)
try:
    case.assert_close("y", case.expected["y"] + 1.0)
    failed = False
except AssertionError:
    failed = True
print(json.dumps({{"n": len(cases), "failed": failed,
                  "modules": sorted(m for m in sys.modules if m.startswith("refnorm.golden."))}}))
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    out = json.loads(run.stdout.splitlines()[-1])
    assert out["n"] > 0 and out["failed"]
    loaded = {m.split(".")[2] for m in out["modules"]}
    assert not loaded & set(GENERATOR), f"reading a corpus imported {sorted(loaded & set(GENERATOR))}"
    assert "reader" in loaded and "comparison" in loaded


def test_the_generator_names_stay_importable_from_the_package():
    from refnorm.golden import corpus

    assert (refnorm.golden.generate, refnorm.golden.verify, refnorm.golden.Problem) == (
        corpus.generate, corpus.verify, corpus.Problem)
    assert set(refnorm.golden.__all__) <= set(dir(refnorm.golden))
    assert not hasattr(refnorm.golden, "no_such_name")


def _local_imports():
    """(file relative to refnorm/, function, line, module) for every import of a
    refnorm module inside a function body anywhere in refnorm/."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    names = _imported(node, path)
                    if any(n == "refnorm" or n.startswith("refnorm.") for n in names):
                        found.append((path.relative_to(PACKAGE).as_posix(), fn.name, node.lineno, min(names)))
    return found


def test_no_function_imports_a_refnorm_module():
    found = _local_imports()
    bad = [f"refnorm/{f}:{line} {fn}() imports {mod}" for f, fn, line, mod in found
           if (f, fn) not in LOCAL_IMPORTS_ALLOWED]
    assert not bad, ("imports of refnorm modules inside functions (move them to the top of the module; a cycle "
                     "they would close is a structure to fix, not to hide):\n" + "\n".join(bad))
    used = {(f, fn) for f, fn, _, _ in found}
    assert set(LOCAL_IMPORTS_ALLOWED) <= used, f"stale allow-list entries: {set(LOCAL_IMPORTS_ALLOWED) - used}"


def test_the_whole_package_import_graph_is_acyclic():
    """No cycle anywhere in refnorm: the graph of every module's top-level
    imports of refnorm modules (a package's ``__init__`` is the package) sorts
    topologically."""
    graph = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = _module_name(path)
        graph[name] = {m for m in _top_level_imports(path)
                       if (m == "refnorm" or m.startswith("refnorm.")) and m != name}
    order = list(graphlib.TopologicalSorter(graph).static_order())  # raises CycleError on a cycle
    assert set(graph) <= set(order) and len(graph) > 40
