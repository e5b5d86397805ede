"""The ``refnorm`` command line: exit codes and output (in-process ``main``,
plus one end-to-end run of the installed console script)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from refnorm import __version__
from refnorm.cli import build_parser, main
from refnorm.golden.corpus import generate
from refnorm.golden.selection import choices

from .conformance.test_backend_loading import _syntax_error, _write_backend, folder  # noqa: F401  (a fixture)
from .golden.test_corpus import fake_catalogue, install_fake


@pytest.fixture
def fake(monkeypatch):
    install_fake(monkeypatch)


@pytest.fixture
def golden(fake, tmp_path):
    out = tmp_path / "golden"
    generate(out)
    return out


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def refnorm_exe():
    """The installed ``refnorm`` console script and the environment to run it in."""
    exe = Path(sys.executable).parent / "refnorm"
    if not exe.exists():
        exe = shutil.which("refnorm")
    if not exe:
        pytest.skip("the refnorm console script is not installed (pip install -e .)")
    env = dict(os.environ, REFNORM_NO_PROGRESS="1")
    env.pop("REFNORM_GOLDEN_DIR", None)
    return str(exe), env


def test_parser_has_the_subcommands():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert {"list", "generate", "verify"} <= set(sub.choices)
    assert parser.prog == "refnorm"


def test_no_command_prints_help_and_returns_2(capsys):
    code, out, err = run(capsys)
    assert code == 2 and "usage: refnorm" in err


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and __version__ in capsys.readouterr().out


def test_bad_arguments_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["generate", "--bogus"])
    assert info.value.code == 2


def test_list(fake, capsys):
    code, out, err = run(capsys, "list")
    lines = out.splitlines()
    assert code == 0
    assert "layer_norm (7 cases)" in lines and "rms_norm (1 cases)" in lines
    assert any(line.split()[:2] == ["layer_norm/basic__bfloat16", "statistical"] and "basic rows" in line
               for line in lines)
    assert lines[-1] == "8 cases in 2 ops (1 exact, 5 statistical, 2 adversarial)"
    code, out, _ = run(capsys, "list", "--large", "--ops", "layer_norm", "--dtypes", "float32")
    assert code == 0 and "[large]" in out and out.splitlines()[-1].startswith("4 cases in 1 ops")
    code, out, err = run(capsys, "list", "--ops", "batch_norm")  # a known op the fake catalogue lacks
    assert code == 1 and "no catalogue case matched" in err


CHECK = ["check", "--backend", "numpy32"]


@pytest.mark.parametrize("command", [["list"], ["generate"], CHECK])
@pytest.mark.parametrize("what", ["op", "dtype", "tier"])
def test_unknown_selection_values_are_usage_errors(capsys, command, what):
    good = choices(what)[0]
    with pytest.raises(SystemExit) as info:
        main([*command, f"--{what}s", good, f"{good},bogus"])
    err = capsys.readouterr().err
    assert info.value.code == 2
    assert f"argument --{what}s: unknown {what} 'bogus'; expected one of {', '.join(choices(what))}" in err
    with pytest.raises(SystemExit) as info:
        main([*command, f"--{what}s", ","])
    assert info.value.code == 2 and f"',' names no {what}" in capsys.readouterr().err


def test_selection_values_come_from_the_registry_and_manifest():
    from refnorm._registry import registry
    from refnorm.golden.casespec import TIERS
    from refnorm.golden.dtypes import DTYPE_NAMES

    assert (choices("op"), choices("dtype"), choices("tier")) == (tuple(registry()), DTYPE_NAMES, TIERS)
    with pytest.raises(ValueError, match="what must be 'op', 'dtype' or 'tier', got 'ops'"):
        choices("ops")


def test_generate_and_verify(fake, tmp_path, capsys):
    out_dir = tmp_path / "corpus"
    code, out, err = run(capsys, "generate", "--out", str(out_dir), "--quiet")
    assert code == 0 and out.startswith("wrote 8 cases (layer_norm 7, rms_norm 1), ") and " MiB, in " in out
    assert str(out_dir) in out and err == ""  # no progress bar when not a TTY
    code, out, err = run(capsys, "verify", str(out_dir))
    assert code == 0 and out.startswith("ok: 8 cases in ")
    code, out, _ = run(capsys, "generate", "--out", str(out_dir), "--ops", "rms_norm", "--large")
    assert code == 0 and "wrote 1 cases" in out


def test_generate_filters_need_out(fake, capsys):
    code, out, err = run(capsys, "generate", "--ops", "layer_norm")
    assert code == 2 and "--out" in err


def test_generate_refuses_non_corpus_dir(fake, tmp_path, capsys):
    (tmp_path / "x.txt").write_text("x")
    code, out, err = run(capsys, "generate", "--out", str(tmp_path))
    assert code == 1 and "not a golden corpus" in err and (tmp_path / "x.txt").exists()


def test_verify_reports_bad_files(golden, capsys):
    path = golden / "layer_norm" / "basic__float16.safetensors"
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))
    (golden / "stray.bin").write_bytes(b"")
    code, out, err = run(capsys, "verify", str(golden))
    assert code == 1
    lines = out.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"BAD {path}: [layer_norm/basic__float16] sha256 mismatch")
    assert lines[1] == f"BAD {golden / 'stray.bin'}: file is not listed in the manifest"
    assert "2 bad file(s)" in err


def test_verify_default_dir_from_env_and_missing_corpus(golden, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("REFNORM_GOLDEN_DIR", str(golden))
    assert run(capsys, "verify")[0] == 0
    code, out, _ = run(capsys, "verify", str(tmp_path / "nowhere"))
    assert code == 1 and "manifest.json: no golden corpus here" in out


def test_console_script_end_to_end(golden, refnorm_exe):
    exe, env = refnorm_exe
    ok = subprocess.run([exe, "verify", "--no-recompute", str(golden)], capture_output=True, text=True,
                        env=env, timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("ok: 8 cases")
    (golden / "rms_norm" / "exact_rows__float32.safetensors").write_bytes(b"garbage")
    bad = subprocess.run([exe, "verify", "--no-recompute", str(golden)], capture_output=True, text=True,
                         env=env, timeout=300)
    assert bad.returncode == 1
    assert "rms_norm/exact_rows__float32.safetensors: [rms_norm/exact_rows__float32] sha256 mismatch" in bad.stdout
    usage = subprocess.run([exe], capture_output=True, text=True, env=env, timeout=300)
    assert usage.returncode == 2 and "usage: refnorm" in usage.stderr


# ----------------------------------------------------------------------------- check: loading the backend

SELECTION = ["--ops", "layer_norm", "--dtypes", "float64", "--tiers", "exact", "--quiet"]
BROKEN = "def layer_norm(x:\n"


def test_check_backend_that_cannot_be_loaded_is_one_line(folder, capsys):
    path = folder / "broken_backend.py"
    path.write_text(BROKEN)
    cause = _syntax_error(BROKEN, path)
    for spec in ("broken_backend.py", "broken_backend"):
        code, out, err = run(capsys, "check", "--backend", spec, *SELECTION)
        assert (code, out) == (2, "")
        assert err == f"refnorm check: error: cannot load backend {spec!r} from {path}: {cause}\n"
    code, out, err = run(capsys, "check", "--backend", "broken_backend.py", "--traceback", *SELECTION)
    assert code == 2 and err.startswith("Traceback (most recent call last):")
    assert f'File "{path}", line 1' in err and "The above exception was the direct cause" in err
    assert err.splitlines()[-1] == (f"refnorm.conformance.backends.BackendLoadError: cannot load backend "
                                    f"'broken_backend.py' from {path}: {cause}")


def test_check_corpus_errors_and_empty_selection_exit_1(golden, tmp_path, capsys):
    code, out, err = run(capsys, "check", "--backend", "numpy32", "--golden-dir", str(tmp_path / "nowhere"),
                         "--quiet")
    assert code == 1 and len(err.splitlines()) == 1 and "no golden corpus here" in err
    code, out, err = run(capsys, "check", "--backend", "numpy32", "--golden-dir", str(golden), "--ops", "batch_norm",
                         "--quiet")  # a known op the fake corpus lacks
    assert code == 1 and "no golden case matched the selection" in err


def test_console_script_loads_backends_from_the_current_folder(refnorm_exe, tmp_path):
    exe, env = refnorm_exe

    def refnorm_check(backend):
        return subprocess.run([exe, "check", "--backend", backend, *SELECTION], cwd=tmp_path, capture_output=True,
                              text=True, env=env, timeout=300)

    def one_line_error(result, start):
        assert result.returncode == 2 and result.stdout == "" and "Traceback" not in result.stderr
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"refnorm check: error: {start}")
        return lines[0]

    assert not any(tmp_path.iterdir())
    line = one_line_error(refnorm_check("my_backend"), "unknown backend 'my_backend'")
    assert str(tmp_path) in line
    _write_backend(tmp_path, "my_backend", "my_helper")
    ok = refnorm_check("my_backend")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("backend my_backend\n")
    (tmp_path / "broken.py").write_text(BROKEN)
    line = one_line_error(refnorm_check("broken"), f"cannot load backend 'broken' from {tmp_path / 'broken.py'}: ")
    assert line.endswith(_syntax_error(BROKEN, tmp_path / "broken.py"))


class _Stream:
    def __init__(self, tty):
        self.tty, self.text = tty, ""

    def isatty(self):
        return self.tty

    def write(self, s):
        self.text += s

    def flush(self):
        pass


def test_progress_bar_is_silent_unless_a_tty(monkeypatch):
    from refnorm._progress import Progress

    monkeypatch.delenv("REFNORM_NO_PROGRESS", raising=False)
    quiet = _Stream(tty=False)
    with Progress("gen", stream=quiet) as bar:
        bar.update(1, 2)
    assert quiet.text == ""
    tty = _Stream(tty=True)
    with Progress("gen", stream=tty, enabled=False) as bar:
        bar(2, 2)
    assert tty.text == ""
    with Progress("gen", stream=tty) as bar:
        bar.update(1, 4)
        bar.update(4, 4)
    assert "gen [" in tty.text and "4/4" in tty.text and tty.text.endswith("\r\x1b[K")
    monkeypatch.setenv("REFNORM_NO_PROGRESS", "1")
    tty2 = _Stream(tty=True)
    with Progress("gen", stream=tty2) as bar:
        bar.update(1, 1)
    assert tty2.text == ""
