"""Where the specification files are found, in a checkout and in an installed package.

The installed layout is simulated by pointing the module at a temporary
``_spec`` folder; ``.ci/wheel`` checks the real one (a wheel in a fresh venv).
"""

import ast
import json
from pathlib import Path, PurePosixPath

import pytest

import refnorm
from refnorm import cli
from refnorm.golden import locations

REPO = Path(refnorm.__file__).resolve().parents[1]


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv(locations.ENV_VAR, raising=False)


@pytest.fixture
def installed(tmp_path, monkeypatch, no_env):
    """refnorm as a wheel installs it: no checkout beside the package, the
    specification under ``<package>/_spec`` (here a copy of the catalogue)."""
    shipped = tmp_path / "site-packages" / "refnorm" / "_spec"
    shipped.mkdir(parents=True)
    (shipped / "cases.toml").write_bytes((REPO / "spec" / "cases.toml").read_bytes())
    monkeypatch.setattr(locations, "_CHECKOUT_SPEC", tmp_path / "site-packages" / "spec")
    monkeypatch.setattr(locations, "_SHIPPED_SPEC", shipped)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return shipped


def test_a_checkout_uses_the_repository_spec(no_env):
    assert locations.in_checkout()
    assert locations.spec_dir() == REPO / "spec"
    assert locations.catalogue_path() == REPO / "spec" / "cases.toml"
    assert locations.default_root() == REPO / "spec" / "golden"
    assert locations.default_out() == REPO / "spec" / "golden"


def test_the_environment_variable_points_readers_and_writers_elsewhere(tmp_path, monkeypatch):
    monkeypatch.setenv(locations.ENV_VAR, str(tmp_path / "mine"))
    assert locations.default_root() == tmp_path / "mine"
    assert locations.default_out() == tmp_path / "mine"


def test_an_installed_package_reads_its_shipped_spec(installed):
    assert not locations.in_checkout()
    assert locations.spec_dir() == installed
    assert locations.catalogue_path() == installed / "cases.toml"
    assert locations.default_root() == installed / "golden"


def test_an_installed_package_generates_into_the_current_folder(installed):
    assert locations.default_out() == Path.cwd() / locations.LOCAL_CORPUS


def test_missing_specification_names_both_places(tmp_path, monkeypatch, no_env):
    monkeypatch.setattr(locations, "_CHECKOUT_SPEC", tmp_path / "a" / "spec")
    monkeypatch.setattr(locations, "_SHIPPED_SPEC", tmp_path / "b" / "_spec")
    with pytest.raises(FileNotFoundError) as e:
        locations.spec_dir()
    assert str(tmp_path / "a" / "spec" / "cases.toml") in str(e.value)
    assert str(tmp_path / "b" / "_spec" / "cases.toml") in str(e.value)


def test_installed_generate_writes_a_subset_into_the_current_folder(installed, capsys):
    assert cli.main(["generate", "--ops", "rms_norm", "--dtypes", "float32", "--tiers", "exact", "--quiet"]) == 0
    out = capsys.readouterr().out
    local = Path.cwd() / locations.LOCAL_CORPUS
    manifest = json.loads((local / "manifest.json").read_text())
    assert manifest["cases"] and {c["op"] for c in manifest["cases"]} == {"rms_norm"}
    assert f"--golden-dir {locations.LOCAL_CORPUS}" in out
    assert cli.main(["verify", "--golden-dir", str(local), "--quiet"]) == 0


def test_checkout_generate_refuses_to_replace_the_committed_corpus_with_a_subset(no_env, capsys):
    assert cli.main(["generate", "--ops", "rms_norm", "--quiet"]) == 2
    assert "--out DIR" in capsys.readouterr().err


def test_verify_refuses_two_different_corpora(tmp_path, capsys):
    assert cli.main(["verify", str(tmp_path / "a"), "--golden-dir", str(tmp_path / "b")]) == 2
    assert "different" in capsys.readouterr().err


def _spec_files_patterns():
    """``SPEC_FILES`` of setup.py, read without running the build."""
    tree = ast.parse((REPO / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "SPEC_FILES" for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError("setup.py defines no SPEC_FILES")


def test_the_wheel_carries_every_file_the_corpus_and_catalogue_need():
    """Every file the committed manifest names, the manifest, the catalogue and the
    format description match setup.py's patterns (a new kind of file would
    otherwise be left out of the wheel silently)."""
    spec = REPO / "spec"
    manifest = json.loads((spec / "golden" / "manifest.json").read_text())
    needed = ["cases.toml", "FORMAT.md", "golden/manifest.json"] + ["golden/" + c["file"] for c in manifest["cases"]]
    patterns = _spec_files_patterns()

    def shipped(f):  # glob semantics: '*' stays within one path segment
        f = PurePosixPath(f)
        return any(len(f.parts) == len(PurePosixPath(p).parts) and f.match(p) for p in patterns)

    missed = [f for f in needed if not shipped(f)]
    assert missed == []
    manifest_in = (REPO / "MANIFEST.in").read_text()
    for f in ("spec/cases.toml", "spec/FORMAT.md", "spec/golden/manifest.json"):
        assert f in manifest_in
    assert "recursive-include spec/golden *.safetensors" in manifest_in
