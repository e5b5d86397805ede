"""Sphinx configuration of the refnorm documentation.

Build (warnings are errors; code examples are executed)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html
    python -m sphinx -W -b doctest docs docs/_build/doctest

Everything that is data rather than prose (the golden-case tables, the
tolerance numbers, the CLI help, the API page, the paper plots) is generated
at build time by ``docs/_ext/refnorm_docs.py`` into ``docs/_generated/``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))  # the refnorm package (and examples/) from this checkout
sys.path.insert(0, str(DOCS / "_ext"))

import refnorm  # noqa: E402

project = "refnorm"
author = "the refnorm authors"
copyright = "the refnorm authors"
release = version = refnorm.__version__

# Everything the build needs is in the docs extra (pip install -e ".[docs]"), and the built site
# loads nothing from the network:
# * math: MathJax 3 is copied into the site's _static/mathjax/ and mathjax_path points there
#   (docs/_ext/mathjax_local.py; the files come from the sphinx-mathjax-offline package), not
#   Sphinx's default CDN URL;
# * pytest is a real dependency of the API page: it documents refnorm.conformance.plugin, a pytest
#   plugin that subclasses pytest.Collector and pytest.Item, so autodoc imports pytest. It is not
#   mocked (autodoc_mock_imports): a mock replaces pytest even where it is installed, and the page
#   would be rendered from a stand-in rather than from the module users get.
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "mathjax_local",
    "sphinx.ext.doctest",
    "myst_parser",
    "refnorm_docs",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "_generated", "_fragments", "Thumbs.db", ".DS_Store"]

# spec/FORMAT.md's code blocks are deliberately pseudo-JSON ("...") and C-like pseudocode, which
# Pygments cannot lex strictly; it falls back to relaxed highlighting, which is what we want.
suppress_warnings = ["misc.highlighting_failure"]

# MyST: $...$ math, ::: fences, definition lists; headings get anchors for cross-page links.
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

# autodoc + napoleon (numpydoc-style docstrings)
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"show-inheritance": False}
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_ivar = True  # dataclass "Attributes" sections must not duplicate autodoc's attributes
napoleon_use_rtype = False

# doctest: every example runs against this checkout
doctest_global_setup = """
import importlib.util
import numpy as np
import refnorm
np.set_printoptions(precision=6, suppress=False, legacy=False)

def _have(module):  # for :skipif: -- framework examples run when the framework is installed
    return importlib.util.find_spec(module) is not None

def _code_has(func, *snippets):
    # The "in code" columns of the derivations quote kernel lines; this keeps them honest:
    # True if every snippet is in the function's current source, else the missing ones.
    import inspect
    src = inspect.getsource(getattr(func, "py_func", func))
    missing = [s for s in snippets if s not in src]
    return missing or True
"""
doctest_test_doctest_blocks = "default"

# The paper plots (examples/papers/*.py) are part of the repository: a missing module
# fails the build with a clear message (REFNORM_DOCS_PAPERS_REQUIRED=0 turns that into
# a note on the page, for a partial checkout).
refnorm_papers_required = os.environ.get("REFNORM_DOCS_PAPERS_REQUIRED", "1") == "1"

html_theme = "alabaster"
html_title = f"refnorm {release}"
html_static_path: list[str] = []
html_theme_options = {
    "description": "the executable specification of normalization layers",
    "page_width": "1180px",
    "sidebar_width": "240px",
    "fixed_sidebar": False,
}
