"""Loading a backend the way Python users expect: a ``.py`` file imports the
modules beside it, a bare name finds ``./<name>.py``, ``sys.path`` is left as
it was, and every failure is one :class:`BackendLoadError` line naming the file
and the cause.  (The built-in, mutant and dotted specs: ``test_backends.py``.)"""

from __future__ import annotations

import importlib
import re
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

import refnorm
from refnorm.conformance import backends
from refnorm.conformance.backends import BUILTIN, BackendLoadError, load_backend

REPO = Path(refnorm.__file__).resolve().parents[1]

#: A backend that takes its layer_norm from a helper module in its own folder.
BACKEND = ("import {helper}\nBACKEND_INFO = {{'name': 'mine', 'description': 'test'}}\n"
           "layer_norm = {helper}.layer_norm\n")
HELPER = "import refnorm\n\ndef layer_norm(*args, **kwargs):\n    return refnorm.layer_norm(*args, **kwargs)\n"


@pytest.fixture
def folder(tmp_path, monkeypatch):
    """``tmp_path`` as the current folder and not on ``sys.path`` (as under the
    ``refnorm`` console script); the modules imported from it are forgotten
    afterwards."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    yield tmp_path
    for name, module in list(sys.modules.items()):
        if str(getattr(module, "__file__", None) or "").startswith(str(tmp_path)):
            del sys.modules[name]


def _write_backend(where: Path, name: str, helper: str) -> Path:
    (where / f"{helper}.py").write_text(HELPER)
    path = where / f"{name}.py"
    path.write_text(BACKEND.format(helper=helper))
    return path


def _works(module) -> None:
    """The backend's layer_norm, taken from its helper, gives refnorm's result bit for bit."""
    rows = np.arange(12.0).reshape(3, 4)
    assert module.layer_norm(rows, (4,)).tobytes() == refnorm.layer_norm(rows, (4,)).tobytes()


# ----------------------------------------------------------------------------- where backends are found


def test_file_backend_imports_its_neighbours_and_restores_sys_path(folder):
    sub = folder / "kernels"
    sub.mkdir()
    path = _write_backend(sub, "file_backend", "file_helper")
    before, path_list = list(sys.path), sys.path
    module = load_backend(str(path))
    assert sys.path == before and sys.path is path_list
    assert str(sub) not in sys.path
    assert sys.modules["file_helper"].__file__ == str(sub / "file_helper.py")
    _works(module)  # the helper keeps working once sys.path is restored


def test_relative_file_path(folder):
    (folder / "pkgdir").mkdir()
    _write_backend(folder / "pkgdir", "rel_backend", "rel_helper")
    module = load_backend(str(Path("pkgdir") / "rel_backend.py"))
    assert module.__file__ == str(folder / "pkgdir" / "rel_backend.py")
    _works(module)


def test_bare_name_finds_the_file_in_the_current_folder(folder):
    _write_backend(folder, "bare_backend", "bare_helper")
    before = list(sys.path)
    module = load_backend("bare_backend")
    assert module.__file__ == str(folder / "bare_backend.py") and sys.path == before
    assert module is load_backend("bare_backend")  # an imported module, as `import` gives it
    _works(module)


def test_dotted_path_into_a_package_in_the_current_folder(folder):
    pkg = folder / "my_kernels_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "pkg_helper.py").write_text(HELPER)
    (pkg / "impl.py").write_text(BACKEND.format(helper="my_kernels_pkg.pkg_helper"))
    module = load_backend("my_kernels_pkg.impl")
    assert module.__name__ == "my_kernels_pkg.impl"
    _works(module)


def test_a_file_in_the_current_folder_does_not_shadow_a_builtin(folder):
    (folder / "numpy32.py").write_text("raise RuntimeError('the local file was imported')\n")
    assert load_backend("numpy32") is importlib.import_module(BUILTIN["numpy32"])


# ----------------------------------------------------------------------------- one line naming the file and the cause


def _syntax_error(source: str, path: Path) -> str:
    try:
        compile(source, str(path), "exec")
    except SyntaxError as e:
        return f"SyntaxError: {e}"
    raise AssertionError("the source compiles")


def _import_error(name: str) -> str:
    with pytest.raises(ModuleNotFoundError) as info:
        importlib.import_module(name)
    return f"ModuleNotFoundError: {info.value}"


MISSING = "refnorm_test_no_such_dependency"
FAILURES = {  # source -> (the exception's type, its expected text given the file path)
    "syntax": ("def f(:\n    pass\n", SyntaxError, _syntax_error),
    "missing dependency": (f"import {MISSING}\n", ModuleNotFoundError, lambda src, p: _import_error(MISSING)),
    "raises": ("raise RuntimeError('no GPU\\nfound')\n", RuntimeError, lambda src, p: "RuntimeError: no GPU found"),
}


@pytest.mark.parametrize("form", ["file", "bare name"])
@pytest.mark.parametrize("kind", list(FAILURES))
def test_a_backend_that_fails_to_import(folder, kind, form):
    source, exc_type, cause = FAILURES[kind]
    name = f"failing_{kind.replace(' ', '_')}"
    path = folder / f"{name}.py"
    path.write_text(source)
    spec = f"{name}.py" if form == "file" else name
    before = list(sys.path)
    with pytest.raises(BackendLoadError) as info:
        load_backend(spec)
    assert str(info.value) == f"cannot load backend {spec!r} from {path}: {cause(source, path)}"
    assert isinstance(info.value, ImportError) and isinstance(info.value, ValueError)
    assert type(info.value.__cause__) is exc_type
    assert sys.path == before and not [m for m in sys.modules if m == name or m.endswith("_" + name)]


def test_a_package_that_fails_is_named(folder):
    pkg = folder / "broken_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(f"import {MISSING}\n")
    (pkg / "impl.py").write_text("")
    with pytest.raises(BackendLoadError) as info:
        load_backend("broken_pkg.impl")
    assert str(info.value) == (f"cannot load backend 'broken_pkg.impl' from {pkg / '__init__.py'}: "
                               f"{_import_error(MISSING)}")


@pytest.mark.parametrize("spec", ["missing.py", "sub/missing.py"])
def test_missing_file(folder, spec):
    with pytest.raises(BackendLoadError) as info:
        load_backend(spec)
    assert str(info.value) == f"cannot load backend {spec!r} from {folder / spec}: no such file"


@pytest.mark.parametrize("spec", ["no_such_backend_here", "no_such_pkg.mod", "refnorm.no_such_module"])
def test_unknown_module_names_the_current_folder(folder, spec):
    with pytest.raises(BackendLoadError, match=f"unknown backend '{re.escape(spec)}'") as info:
        load_backend(spec)
    assert str(folder) in str(info.value) and all(name in str(info.value) for name in BUILTIN)


def test_unknown_mutant_and_bad_specs():
    with pytest.raises(BackendLoadError, match="unknown mutant 'nope'"):
        load_backend("mutant:nope")
    with pytest.raises(BackendLoadError, match="empty"):
        load_backend("  ")
    with pytest.raises(TypeError, match="backend spec must be a string, got int"):
        load_backend(3)


# ----------------------------------------------------------------------------- the built-ins' install hints


def _tested_torch_pin() -> str:
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    return next(r for reqs in extras.values() for r in reqs if r.startswith("torch=="))


@pytest.mark.parametrize("name, packages", [("torch", ["torch"]), ("jax", ["jax", "flax"])])
def test_missing_framework_names_the_pypi_packages(monkeypatch, name, packages):
    for pkg in packages:
        monkeypatch.setitem(sys.modules, pkg, None)  # "import <pkg>" raises ModuleNotFoundError
    monkeypatch.delitem(sys.modules, BUILTIN[name], raising=False)
    with pytest.raises(BackendLoadError) as info:
        load_backend(name)
    msg = str(info.value)
    where = Path(backends.__file__).parent / f"{name}.py"
    assert msg.startswith(f"cannot load backend {name!r} from {where}: ") and "\n" not in msg
    assert f"install it with: pip install {' '.join(packages)}" in msg and "pip install -e" not in msg
    if name == "torch":
        assert _tested_torch_pin() in msg


def test_no_checkout_only_install_hint_in_the_package():
    hint = re.compile(r"pip install -e\s*['\"]?\.\[")
    offenders = [str(p.relative_to(REPO)) for p in (REPO / "refnorm").rglob("*.py") if hint.search(p.read_text())]
    assert offenders == []
