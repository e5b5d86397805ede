"""The backend protocol and the built-in backends.

A *backend* is any module exposing some of refnorm's public function names
with refnorm's signatures: ``<op>(...) -> y``, ``<op>_backward(dy, ...) -> dict``
(keys ``"x"``, ``"weight"``, ``"bias"``), ``<op>_stats(...) -> (y, {"mean", "rstd"})``
and ``batch_norm_running_stats`` / ``instance_norm_running_stats``.  A function
a backend lacks, or that raises ``NotImplementedError``, is reported as "not
implemented".  Each backend module also defines ``BACKEND_INFO = {"name": ...,
"description": ...}``.

Built-in backends (:data:`BUILTIN`): ``refnorm`` (the float64 reference),
``torch`` (``torch.nn.functional`` on CPU), ``jax`` (Flax linen / jax.numpy on
CPU) and ``numpy32`` (a plain NumPy second implementation).
"""

from __future__ import annotations

import importlib
import importlib.util
import itertools
import os
import sys

BUILTIN = {
    "refnorm": "refnorm",
    "torch": "refnorm.conformance.backends.torch",
    "jax": "refnorm.conformance.backends.jax",
    "numpy32": "refnorm.conformance.backends.numpy32",
}

#: The third-party package each optional built-in needs, and the extra that installs it.
_EXTRAS = {"torch": ("torch", "pip install torch==2.13.0 (or pip install -e '.[test]')"),
           "jax": ("jax", "pip install -e '.[jax]' (and pip install flax for the Flax layers)")}

_counter = itertools.count()


def _import_builtin(name: str):
    module = BUILTIN[name]
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if name in _EXTRAS:
            pkg, how = _EXTRAS[name]
            raise ImportError(f"the {name!r} backend needs the {pkg!r} package, which is not importable "
                              f"({exc}); install it with: {how}") from exc
        raise


def _load_file(path: str):
    mod_name = f"refnorm_backend_{next(_counter)}_{os.path.splitext(os.path.basename(path))[0]}"
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:
        raise ValueError(f"cannot load a backend from {path!r}: not a Python source file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(mod_name, None)
        raise
    return module


def load_backend(spec: str):
    """The backend module named by ``spec``.

    ``spec`` is a built-in name (``refnorm``, ``torch``, ``jax``, ``numpy32``),
    ``mutant:<name>`` (a deliberately buggy backend from
    :mod:`refnorm.conformance.mutants`), an importable dotted module path, or
    the path of a ``.py`` file.  Raises ``ValueError`` when nothing matches and
    ``ImportError`` (naming the pip extra) when an optional framework is missing.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"backend spec must be a non-empty string, got {spec!r}")
    spec = spec.strip()
    if spec in BUILTIN:
        return _import_builtin(spec)
    if spec.startswith("mutant:"):
        from ..mutants import load_mutant

        return load_mutant(spec[len("mutant:"):])
    if spec.endswith(".py") or os.sep in spec or (os.altsep and os.altsep in spec):
        if not os.path.isfile(spec):
            raise ValueError(f"backend file {spec!r} does not exist")
        return _load_file(spec)
    try:
        found = importlib.util.find_spec(spec) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise ValueError(f"unknown backend {spec!r}: expected one of {sorted(BUILTIN)}, 'mutant:<name>', "
                         "an importable module path or the path of a .py file")
    return importlib.import_module(spec)


__all__ = ["BUILTIN", "load_backend"]
