"""Serve MathJax from the site itself, so that math renders without a CDN or any network.

The MathJax 3 files come from the ``sphinx-mathjax-offline`` package of the docs extra, used
only as their carrier.  This extension points ``mathjax_path`` (still at Sphinx's CDN default)
at ``_static/mathjax/tex-chtml.js`` and, when an HTML build finishes, copies that bundle and the
directories it loads from on demand (TeX extensions, fonts, menu, accessibility, speech maps)
into the site.

The package's own extension does the same, but copies every MathJax bundle (24 MB) into the
output of every builder, doctest included, and declares no parallel safety, which turns
``sphinx -W -j N`` into an error.
"""

from __future__ import annotations

import shutil
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from sphinx.errors import ExtensionError
from sphinx.ext.mathjax import MATHJAX_URL

DISTRIBUTION = "sphinx-mathjax-offline"
#: ``mathjax_path`` of the site: relative, hence under the output's ``_static/``.
MATHJAX_PATH = "mathjax/tex-chtml.js"
#: What tex-chtml.js needs, relative to the MathJax directory: the bundle and what it loads by path.
MATHJAX_FILES = ("tex-chtml.js", "a11y", "input", "output", "sre", "ui")


def mathjax_source() -> Path:
    """The MathJax directory the ``sphinx-mathjax-offline`` distribution installs."""
    try:
        dist = distribution(DISTRIBUTION)
    except PackageNotFoundError:
        raise ExtensionError(f"refnorm docs: math is served from the site, which needs the {DISTRIBUTION} "
                             "package: pip install -e '.[docs]'") from None
    src = Path(dist.locate_file("sphinx-mathjax-offline/static/mathjax"))
    if not (src / "tex-chtml.js").is_file():
        raise ExtensionError(f"refnorm docs: {DISTRIBUTION} {dist.version} has no static/mathjax/tex-chtml.js; "
                             "this extension expects the layout of version 0.0.2")
    return src


def _serves_mathjax(app) -> bool:
    return app.builder.format == "html" and app.config.mathjax_path == MATHJAX_PATH


def point_mathjax_here(app, config) -> None:
    if config.mathjax_path == MATHJAX_URL:  # not set in conf.py or with -D
        config.mathjax_path = MATHJAX_PATH


def check_source(app) -> None:
    if _serves_mathjax(app):
        mathjax_source()  # fail before the build rather than after it


def copy_mathjax(app, exc) -> None:
    if exc is not None or not _serves_mathjax(app):
        return
    src, dst = mathjax_source(), Path(app.outdir) / "_static" / "mathjax"
    for name in MATHJAX_FILES:
        if (src / name).is_dir():
            shutil.copytree(src / name, dst / name, dirs_exist_ok=True)
        else:
            dst.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src / name, dst / name)


def setup(app):
    app.setup_extension("sphinx.ext.mathjax")
    app.connect("config-inited", point_mathjax_here)
    app.connect("builder-inited", check_source)
    app.connect("build-finished", copy_mathjax)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
