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
    code, out, err = run(capsys, "list", "--ops", "nope")
    assert code == 1 and "no catalogue case matched" in err
    code, out, err = run(capsys, "list", "--tiers", "fuzzy")
    assert code == 1 and "unknown tier 'fuzzy'" in err


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


def test_console_script_end_to_end(golden, tmp_path):
    exe = Path(sys.executable).parent / "refnorm"
    if not exe.exists():
        exe = shutil.which("refnorm")
    if not exe:
        pytest.skip("the refnorm console script is not installed (pip install -e .)")
    env = dict(os.environ, REFNORM_NO_PROGRESS="1")
    env.pop("REFNORM_GOLDEN_DIR", None)
    ok = subprocess.run([str(exe), "verify", "--no-recompute", str(golden)], capture_output=True, text=True,
                        env=env, timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("ok: 8 cases")
    (golden / "rms_norm" / "exact_rows__float32.safetensors").write_bytes(b"garbage")
    bad = subprocess.run([str(exe), "verify", "--no-recompute", str(golden)], capture_output=True, text=True,
                         env=env, timeout=300)
    assert bad.returncode == 1
    assert "rms_norm/exact_rows__float32.safetensors: [rms_norm/exact_rows__float32] sha256 mismatch" in bad.stdout
    usage = subprocess.run([str(exe)], capture_output=True, text=True, env=env, timeout=300)
    assert usage.returncode == 2 and "usage: refnorm" in usage.stderr


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
