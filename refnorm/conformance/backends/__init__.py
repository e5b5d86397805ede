"""The backend protocol and the built-in backends.

A *backend* is any module exposing some of refnorm's public function names
with refnorm's signatures: ``<op>(...) -> y``, ``<op>_backward(dy, ...) -> dict``
(keys ``"x"``, ``"weight"``, ``"bias"``), ``<op>_stats(...) -> (y, {"mean", "rstd"})``
and ``batch_norm_running_stats`` / ``instance_norm_running_stats``.  A function
a backend lacks, or that raises ``NotImplementedError``, is reported as "not
implemented".  Each backend module also defines ``BACKEND_INFO = {"name": ...,
"description": ...}``.

Built-in backends (:data:`BUILTIN`): ``refnorm`` (the float64 reference),
``torch`` (``torch.nn.functional`` on CPU), ``torch-fwfw`` (PyTorch's nested
forward mode as a double backward, and nothing else), ``jax`` (Flax linen /
jax.numpy on CPU), ``numpy32`` (a plain NumPy second implementation), and the
runtimes people deploy: ``keras`` and ``keras-jax`` (Keras 3 layers on Keras's
numpy and jax backends), ``onnx`` and ``onnx-function`` (single-node ONNX
models run by onnx's reference evaluator, by the op's own kernel and by its
function body) and ``onnxruntime`` (the same models on ONNX Runtime's CPU
execution provider).

A backend of one's own loads the way a Python script does: a ``.py`` file may
import the modules beside it, and a bare module name is looked up in the
current folder first (as ``python -m`` does), then on ``sys.path``.  Whatever
goes wrong while loading -- an unknown name, a missing file, a syntax error, a
missing dependency, any exception raised by the module -- is one
:class:`BackendLoadError` whose message names the backend, its file and the
cause on one line.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import itertools
import os
import sys

from ..mutants import load_mutant

BUILTIN = {
    "refnorm": "refnorm",
    "torch": "refnorm.conformance.backends.torch",
    "torch-fwfw": "refnorm.conformance.backends.torch_fwfw",
    "jax": "refnorm.conformance.backends.jax",
    "numpy32": "refnorm.conformance.backends.numpy32",
    "keras": "refnorm.conformance.backends.keras_numpy",
    "keras-jax": "refnorm.conformance.backends.keras_jax",
    "onnx": "refnorm.conformance.backends.onnx_reference",
    "onnx-function": "refnorm.conformance.backends.onnx_function",
    "onnxruntime": "refnorm.conformance.backends.onnxruntime",
}

#: How to install the PyPI packages an optional built-in backend imports.
_EXTRAS = {"torch": "pip install torch (refnorm is tested with torch==2.13.0)",
           "torch-fwfw": "pip install torch (refnorm is tested with torch==2.13.0)",
           "jax": "pip install jax flax",
           "keras": "pip install 'refnorm[keras]' (keras; refnorm is tested with keras==3.15.1)",
           "keras-jax": "pip install 'refnorm[keras]' (keras and jax; refnorm is tested with keras==3.15.1)",
           "onnx": "pip install 'refnorm[onnx]' (onnx; refnorm is tested with onnx==1.23.2)",
           "onnx-function": "pip install 'refnorm[onnx]' (onnx; refnorm is tested with onnx==1.23.2)",
           "onnxruntime": "pip install 'refnorm[onnx]' (onnx and onnxruntime; refnorm is tested with "
                          "onnxruntime==1.32.0)"}

_counter = itertools.count()


class BackendLoadError(ImportError, ValueError):
    """A backend spec that gives no module: unknown, a missing file, or a
    module whose import raised (its exception is the ``__cause__``).

    The message is one line naming the spec, the file and the cause.  It is
    an ``ImportError`` (what a failed import raises) and a ``ValueError``
    (what a bad ``spec`` argument raises), so callers catching either keep
    working.
    """


def _failed(spec: str, where: str, exc: BaseException, hint: str = "") -> BackendLoadError:
    """The :class:`BackendLoadError` for ``exc`` raised while loading ``spec`` from ``where``."""
    cause = " ".join(str(exc).split())  # one line, whatever the exception's message looks like
    return BackendLoadError(f"cannot load backend {spec!r} from {where}: {type(exc).__name__}: {cause}{hint}")


@contextlib.contextmanager
def _first_on_path(folder: str):
    """Put ``folder`` first on ``sys.path`` for the duration, then restore
    ``sys.path`` exactly; the modules imported meanwhile stay in ``sys.modules``,
    so a backend keeps using the helpers it imported from beside it."""
    saved = list(sys.path)
    sys.path.insert(0, folder)
    importlib.invalidate_caches()  # the folder's files may have been written a moment ago
    try:
        yield
    finally:
        sys.path[:] = saved


def _module_file(name: str) -> str:
    """The file of module ``name`` after its import failed, without importing
    anything: the file of the first of ``a``, ``a.b``, ... that is not in
    ``sys.modules`` (a failed import removes itself, so that is the package or
    module that raised), or ``"module <name>"`` when no file is known."""
    parts = name.split(".")
    prefixes = [".".join(parts[:i]) for i in range(1, len(parts) + 1)]
    failed = next((p for p in prefixes if p not in sys.modules), name)
    try:
        found = importlib.util.find_spec(failed)
    except (ImportError, ValueError):
        found = None
    return found.origin if found is not None and found.origin else f"module {name}"


def _import(spec: str, module: str, hint: str = ""):
    """Import ``module`` for the backend ``spec``, turning any exception into a :class:`BackendLoadError`."""
    try:
        return importlib.import_module(module)
    except Exception as exc:
        raise _failed(spec, _module_file(module), exc, hint) from exc


def _import_builtin(name: str):
    """The built-in backend ``name``; a failure names the PyPI packages an optional one needs."""
    return _import(name, BUILTIN[name], f"; install it with: {_EXTRAS[name]}" if name in _EXTRAS else "")


def _load_file(spec: str):
    """Execute the ``.py`` file ``spec`` as a fresh module, with its folder first on ``sys.path``."""
    path = os.path.abspath(spec)
    if not os.path.isfile(path):
        raise BackendLoadError(f"cannot load backend {spec!r} from {path}: no such file")
    mod_name = f"refnorm_backend_{next(_counter)}_{os.path.splitext(os.path.basename(path))[0]}"
    module_spec = importlib.util.spec_from_file_location(mod_name, path)
    if module_spec is None or module_spec.loader is None:
        raise BackendLoadError(f"cannot load backend {spec!r} from {path}: not a Python source file")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[mod_name] = module
    try:
        with _first_on_path(os.path.dirname(path)):
            module_spec.loader.exec_module(module)
    except BaseException as exc:
        sys.modules.pop(mod_name, None)
        if isinstance(exc, Exception):
            raise _failed(spec, path, exc) from exc
        raise
    return module


def _names_spec(missing: str | None, spec: str) -> bool:
    """Whether a ModuleNotFoundError for ``missing`` means ``spec`` itself (or a
    package on its path) does not exist, rather than that it imports something missing."""
    return missing is not None and (spec == missing or spec.startswith(missing + "."))


def _load_module(spec: str):
    """Import the dotted module ``spec`` with the current folder first on ``sys.path``."""
    cwd = os.getcwd()
    with _first_on_path(cwd):
        try:
            found = importlib.util.find_spec(spec) is not None
        except ValueError:  # not a module name at all, e.g. ".x"
            found = False
        except Exception as exc:  # a package on the path is missing, or raised while importing
            if not (isinstance(exc, ModuleNotFoundError) and _names_spec(exc.name, spec)):
                raise _failed(spec, _module_file(spec), exc) from exc
            found = False
        if not found:
            raise BackendLoadError(
                f"unknown backend {spec!r}: expected one of {', '.join(BUILTIN)}, 'mutant:<name>', a module "
                f"importable from {cwd} or the Python path, or the path of a .py file")
        return _import(spec, spec)


def load_backend(spec: str):
    """The backend module named by ``spec``.

    ``spec`` is a built-in name (``refnorm``, ``torch``, ``torch-fwfw``, ``jax``, ``numpy32``,
    ``keras``, ``keras-jax``, ``onnx``, ``onnx-function``, ``onnxruntime``),
    ``mutant:<name>`` (a deliberately buggy backend from
    :mod:`refnorm.conformance.mutants`), a dotted module path (``mymodule``
    finds ``./mymodule.py``: the current folder is searched first), or the path
    of a ``.py`` file (which may import the modules in its folder).  Raises
    :class:`BackendLoadError` (an ``ImportError`` and a ``ValueError``) with a
    one-line message naming the file and the cause when nothing matches or the
    module cannot be imported -- for an optional built-in, with the ``pip
    install`` command of what it needs -- and ``TypeError`` when ``spec`` is
    not a string.
    """
    if not isinstance(spec, str):
        raise TypeError(f"backend spec must be a string, got {type(spec).__name__}")
    spec = spec.strip()
    if not spec:
        raise BackendLoadError("backend spec is empty: expected a built-in name, 'mutant:<name>', a module or a "
                               ".py file")
    if spec in BUILTIN:
        return _import_builtin(spec)
    if spec.startswith("mutant:"):
        try:
            return load_mutant(spec[len("mutant:"):])
        except ValueError as exc:
            raise BackendLoadError(f"cannot load backend {spec!r}: {exc}") from exc
    if spec.endswith(".py") or os.sep in spec or (os.altsep and os.altsep in spec):
        return _load_file(spec)
    return _load_module(spec)


__all__ = ["BUILTIN", "BackendLoadError", "load_backend"]
