"""The documentation builds without a warning and every code example in it runs.

Both Sphinx builders run in subprocesses with the current interpreter, into a
temporary directory (the generated fragments go to ``docs/_generated/``, as in
a normal build):

* ``python -m sphinx -W --keep-going -b html docs OUT``  (warnings are errors; the site
  loads nothing from the network: MathJax is served from its own ``_static/``);
* ``python -m sphinx -W -b doctest docs OUT``  (a stale example fails).

Plus two fast checks of the docs extension's generated data that need no build.
Skipped only when Sphinx is not importable (``pip install -e ".[docs]"``).
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"

pytestmark = pytest.mark.skipif(importlib.util.find_spec("sphinx") is None,
                                reason="sphinx is not importable: install the docs extra, pip install -e '.[docs]'")

TIMEOUT = 600  # seconds per build; a normal build takes ~5 s (html) and ~15 s (doctest)


def _sphinx(builder: str, out: Path, *flags: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "sphinx", *flags, "-b", builder, str(DOCS), str(out)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, cwd=DOCS.parent)


def _explain(proc: subprocess.CompletedProcess, what: str) -> str:
    tail = "\n".join((proc.stdout + "\n" + proc.stderr).strip().splitlines()[-60:])
    return f"{what} failed with exit code {proc.returncode}; last lines of its output:\n{tail}"


@pytest.fixture(scope="module")
def html(tmp_path_factory):
    """One html build for the tests below: (the finished process, the output directory)."""
    out = tmp_path_factory.mktemp("docs") / "html"
    return _sphinx("html", out, "-W", "--keep-going"), out


def test_html_builds_without_warnings(html):
    proc, out = html
    assert proc.returncode == 0, _explain(proc, "sphinx -W --keep-going -b html")
    for page in ("index", "conformance", "differences", "papers", "cli", "api", "numerics", "format",
                 "ops/layer_norm", "ops/proxy_norm", "ops/weight_standardization"):
        assert (out / f"{page}.html").is_file(), page


# A tag that makes the browser fetch something (a script, a stylesheet, an image...) from another
# host: an absolute or protocol-relative URL.  Links (<a href>) are not fetched and may be remote.
_REMOTE_LOAD = re.compile(r"<(?:script|link|img|iframe|embed|object|source)\b[^>]*?\b(?:src|href|data)\s*=\s*"
                          r"[\"']?(?:[a-z][a-z0-9+.-]*:)?//", re.IGNORECASE)


def test_the_site_loads_nothing_remote_and_math_from_its_own_static(html):
    proc, out = html
    assert proc.returncode == 0, _explain(proc, "sphinx -W --keep-going -b html (see the test above)")
    remote = {str(p.relative_to(out)): m.group(0) for p in sorted(out.rglob("*.html"))
              if (m := _REMOTE_LOAD.search(p.read_text(encoding="utf-8")))}
    assert not remote, f"pages that load from the network (first such tag of each): {remote}"
    # A page with math loads MathJax, from a relative path to a file the build copied into the site.
    page = out / "ops" / "layer_norm.html"
    text = page.read_text(encoding="utf-8")
    assert 'class="math' in text, "ops/layer_norm.html has no math: pick a page that has"
    srcs = re.findall(r"<script\b[^>]*?\bsrc=\"([^\"]*mathjax[^\"]*)\"", text, re.IGNORECASE)
    assert len(srcs) == 1, srcs
    script = (page.parent / srcs[0].split("?")[0]).resolve()
    assert script == (out / "_static" / "mathjax" / "tex-chtml.js").resolve(), srcs[0]
    assert script.stat().st_size > 100_000, "tex-chtml.js is not the MathJax bundle"
    fonts = out / "_static" / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2"
    assert any(fonts.glob("MathJax_Main-Regular.woff")), f"no MathJax fonts in {fonts}"


def test_doctests_pass(tmp_path):
    proc = _sphinx("doctest", tmp_path / "doctest", "-W")
    assert proc.returncode == 0, _explain(proc, "sphinx -W -b doctest")
    assert "0 failures in tests" in proc.stdout, _explain(proc, "sphinx -b doctest")


# ----------------------------------------------------------------------------- the docs extension


@pytest.fixture
def ext(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(DOCS / "_ext"))
    import refnorm_docs

    monkeypatch.setattr(refnorm_docs, "GENERATED", tmp_path / "_generated")
    return refnorm_docs


def test_golden_table_of_an_op_without_cases_says_so(ext, tmp_path):
    case = {"id": "layer_norm/x__float32", "op": "layer_norm", "tier": "exact", "dtype": "float32",
            "shapes": {"x": [2, 3]}, "description": "a | b * c_d $e$", "expect": {"kind": "value"}}
    ext.golden_tables({"refnorm_version": "0", "cases": [case]})
    seed = (tmp_path / "_generated" / "golden" / "proxy_norm.md").read_text()
    assert "No golden cases yet" in seed
    table = (tmp_path / "_generated" / "golden" / "layer_norm.md").read_text()
    assert "`layer_norm/x__float32`" in table and r"a \| b \* c\_d \$e\$" in table
    assert json.dumps(case)  # the manifest entry itself is untouched


def test_paper_plots_required_but_missing_fail_clearly(ext, monkeypatch, tmp_path):
    from sphinx.errors import ExtensionError

    monkeypatch.setattr(ext, "ROOT", tmp_path)  # no examples/papers here
    app = SimpleNamespace(config=SimpleNamespace(refnorm_papers_required=True))
    with pytest.raises(ExtensionError, match="examples/papers/collapse.py"):
        ext.paper_figures(app)
    app.config.refnorm_papers_required = False
    ext.paper_figures(app)
    assert "is not in this checkout yet" in (tmp_path / "_generated" / "papers.md").read_text()
