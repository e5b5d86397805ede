"""pytest plugin: run the golden suite against a backend, or write your own
tests over golden cases.

Registered through the ``pytest11`` entry point, so it is active wherever
refnorm is installed; it does nothing unless asked.

Run the whole golden suite against a backend (a built-in name, a dotted module
path, or a ``.py`` file); every (case, function) pair becomes a test whose id is
``<case id>::<function>``::

    pytest --refnorm-backend=torch
    pytest --refnorm-backend=my_kernels.py --refnorm-ops=layer_norm --refnorm-dtypes=float32,bfloat16 \\
           --refnorm-xfail=known_issues.txt

A function the backend does not define is reported as skipped ("not
implemented"); xfail rules become strict ``xfail`` marks.

Write your own tests over golden cases with the :func:`golden_cases` decorator::

    from refnorm.conformance.plugin import golden_cases

    @golden_cases(ops=["layer_norm"], dtypes=["float32"])
    def test_my_layer_norm(case):
        y = my_layer_norm(case.inputs["x"], tuple(case.attrs["normalized_shape"]), ...)
        case.assert_close("y", y)

and the ``refnorm_backend`` fixture gives the module named by ``--refnorm-backend``.

Mistakes in the options are usage errors (exit status 4, one ``ERROR:`` line, no
traceback): an unknown op, dtype or tier, a backend that cannot be loaded (the
line names its file and the cause), a corpus or xfail file that cannot be read.
"""

from __future__ import annotations

import pytest

from ..golden import GoldenFormatError, load_cases
from ..golden.selection import SelectionError, as_list, choices
from .backends import BackendLoadError, load_backend
from .cli_check import default_xfails
from .harness import applicable_functions, check_function, match_xfail, read_xfails

_BACKEND = pytest.StashKey[object]()


def _csv(value):
    return None if not value else [v.strip() for v in value.split(",") if v.strip()]


def _backend(config):
    """The module named by ``--refnorm-backend``, loaded once per session (the
    golden suite and the ``refnorm_backend`` fixture share it).  One that
    cannot be loaded is a :class:`pytest.UsageError` with the one-line message
    of :class:`~refnorm.conformance.backends.BackendLoadError`."""
    if _BACKEND not in config.stash:
        try:
            config.stash[_BACKEND] = load_backend(config.getoption("refnorm_backend"))
        except BackendLoadError as e:
            raise pytest.UsageError(str(e)) from e
    return config.stash[_BACKEND]


def _golden(**selection) -> list:
    """``load_cases(**selection)`` as a list; a corpus that cannot be found or
    read is a :class:`pytest.UsageError` saying why in one line."""
    try:
        return list(load_cases(**selection))
    except (FileNotFoundError, GoldenFormatError) as e:
        raise pytest.UsageError(f"refnorm golden corpus: {e}") from e


def pytest_addoption(parser):
    group = parser.getgroup("refnorm", "refnorm golden-corpus conformance")
    group.addoption("--refnorm-backend", default=None, metavar="NAME|MODULE|FILE.py",
                    help="run the refnorm golden suite against this backend")
    group.addoption("--refnorm-ops", default=None, help="comma-separated ops to check (default: all)")
    group.addoption("--refnorm-dtypes", default=None, help="comma-separated dtypes (default: all)")
    group.addoption("--refnorm-tiers", default=None, help="comma-separated tiers (default: all)")
    group.addoption("--refnorm-xfail", default=None, metavar="FILE",
                    help="xfail file (default: the shipped one for a built-in backend)")
    group.addoption("--refnorm-golden-dir", default=None, metavar="DIR", help="corpus directory")


def pytest_configure(config):
    """Refuse an unknown ``--refnorm-ops``/``--refnorm-dtypes``/``--refnorm-tiers``
    value (a :class:`pytest.UsageError` listing the known ones: the registry's
    ops, the corpus's dtypes and tiers) before anything is collected."""
    for what in ("op", "dtype", "tier"):
        values = _csv(config.getoption(f"refnorm_{what}s"))
        if values:
            try:
                as_list(values, what, choices(what))
            except SelectionError as e:
                raise pytest.UsageError(f"--refnorm-{what}s: {e}") from e


def golden_cases(ops=None, dtypes=None, tiers=None, root=None, *, argname: str = "case"):
    """A ``pytest.mark.parametrize`` over golden cases; test ids are the case ids.

    A corpus that cannot be read makes the decorated module a collection error
    with the one-line reason (no traceback)."""
    try:
        cases = _golden(ops=ops, dtypes=dtypes, tiers=tiers, root=root)
    except pytest.UsageError as e:
        pytest.fail(str(e), pytrace=False)
    return pytest.mark.parametrize(argname, cases, ids=[c.id for c in cases])


@pytest.fixture
def refnorm_backend(request):
    """The backend module named by ``--refnorm-backend`` (the one the golden suite checks)."""
    if not request.config.getoption("refnorm_backend"):
        pytest.skip("no --refnorm-backend given")
    return _backend(request.config)


class GoldenSuite(pytest.Collector):
    def __init__(self, *, backend, backend_spec, options, **kw):
        super().__init__(**kw)
        self.backend, self.backend_spec, self.options = backend, backend_spec, options

    def collect(self):
        o = self.options
        for case in _golden(ops=o["ops"], dtypes=o["dtypes"], tiers=o["tiers"], root=o["root"]):
            for fn in applicable_functions(case):
                item = GoldenItem.from_parent(self, name=f"{case.id}::{fn}", case=case, function=fn)
                rule = match_xfail(o["xfails"], case.id, fn)
                if rule is not None:
                    item.add_marker(pytest.mark.xfail(reason=rule.reason, strict=True))
                yield item


class GoldenItem(pytest.Item):
    def __init__(self, *, case, function, **kw):
        super().__init__(**kw)
        self.case, self.function = case, function

    def runtest(self):
        oc = check_function(self.parent.backend, self.case, self.function)
        if oc.status == "not_implemented":
            pytest.skip(f"not implemented: {oc.message}")
        if oc.status == "failed":
            raise AssertionError(f"{self.case.op} [{self.case.id}] {self.function}: {oc.message}")

    def repr_failure(self, excinfo):
        if isinstance(excinfo.value, AssertionError):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, None, f"golden {self.name}"


def pytest_collection_modifyitems(session, config, items):
    spec = config.getoption("refnorm_backend")
    if not spec:
        return
    backend = _backend(config)
    xfail_path = config.getoption("refnorm_xfail") or default_xfails(spec)
    try:
        xfails = read_xfails(xfail_path) if xfail_path else []
    except (OSError, ValueError) as e:  # a missing file, a malformed rule
        raise pytest.UsageError(f"xfail file: {e}") from e
    options = {"ops": _csv(config.getoption("refnorm_ops")), "dtypes": _csv(config.getoption("refnorm_dtypes")),
               "tiers": _csv(config.getoption("refnorm_tiers")), "root": config.getoption("refnorm_golden_dir"),
               "xfails": xfails}
    suite = GoldenSuite.from_parent(session, name=f"refnorm-golden[{spec}]", backend=backend,
                                    backend_spec=spec, options=options)
    items.extend(suite.collect())
