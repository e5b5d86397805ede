"""Build hook: ship the specification (``spec/``) inside the package.

Everything else about the build is declared in ``pyproject.toml``.  The
repository keeps one copy of the catalogue, the format description and the
golden corpus, under ``spec/``; a wheel (or a wheel built from the sdist, which
carries ``spec/`` through ``MANIFEST.in``) gets them as ``refnorm/_spec/``, where
:mod:`refnorm.golden.locations` finds them when refnorm is installed.  An
editable install reads ``spec/`` in place and copies nothing.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

SPEC = Path(__file__).resolve().parent / "spec"
#: The files of spec/ that the package carries, as glob patterns relative to spec/.
SPEC_FILES = ("cases.toml", "FORMAT.md", "golden/manifest.json", "golden/*/*.safetensors")


class build_py_with_spec(build_py):
    """``build_py`` that also copies ``spec/`` to ``<build>/refnorm/_spec``."""

    def run(self):
        super().run()
        if self.editable_mode:
            return
        if not (SPEC / "cases.toml").is_file():
            raise SystemExit(f"refnorm build: {SPEC / 'cases.toml'} is missing; build from a checkout or an sdist")
        target = Path(self.build_lib) / "refnorm" / "_spec"
        for pattern in SPEC_FILES:
            for src in sorted(SPEC.glob(pattern)):
                dst = target / src.relative_to(SPEC)
                self.mkpath(str(dst.parent))
                self.copy_file(str(src), str(dst))


setup(cmdclass={"build_py": build_py_with_spec})
