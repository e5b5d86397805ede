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
"""

from __future__ import annotations

import pytest


def _csv(value):
    return None if not value else [v.strip() for v in value.split(",") if v.strip()]


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


def golden_cases(ops=None, dtypes=None, tiers=None, root=None, *, argname: str = "case"):
    """A ``pytest.mark.parametrize`` over golden cases; test ids are the case ids."""
    from ..golden import load_cases

    cases = list(load_cases(ops=ops, dtypes=dtypes, tiers=tiers, root=root))
    return pytest.mark.parametrize(argname, cases, ids=[c.id for c in cases])


@pytest.fixture
def refnorm_backend(request):
    """The backend module named by ``--refnorm-backend``."""
    from .backends import load_backend

    spec = request.config.getoption("refnorm_backend")
    if not spec:
        pytest.skip("no --refnorm-backend given")
    return load_backend(spec)


class GoldenSuite(pytest.Collector):
    def __init__(self, *, backend, backend_spec, options, **kw):
        super().__init__(**kw)
        self.backend, self.backend_spec, self.options = backend, backend_spec, options

    def collect(self):
        from ..golden import load_cases
        from .harness import applicable_functions, match_xfail

        o = self.options
        for case in load_cases(ops=o["ops"], dtypes=o["dtypes"], tiers=o["tiers"], root=o["root"]):
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
        from .harness import check_function

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
    from .backends import load_backend
    from .cli_check import default_xfails
    from .harness import read_xfails

    xfail_path = config.getoption("refnorm_xfail") or default_xfails(spec)
    options = {"ops": _csv(config.getoption("refnorm_ops")), "dtypes": _csv(config.getoption("refnorm_dtypes")),
               "tiers": _csv(config.getoption("refnorm_tiers")), "root": config.getoption("refnorm_golden_dir"),
               "xfails": read_xfails(xfail_path) if xfail_path else []}
    suite = GoldenSuite.from_parent(session, name=f"refnorm-golden[{spec}]", backend=load_backend(spec),
                                    backend_spec=spec, options=options)
    items.extend(suite.collect())
