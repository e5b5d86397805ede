"""``refnorm case``: a user's tensors become a golden case that ``refnorm check``
replays (in-process ``main``: exit codes 0 / 1 / 2 and what is printed)."""

from __future__ import annotations

import json

import ml_dtypes
import numpy as np
import pytest

from refnorm.cli import build_parser, main
from refnorm.golden.corpus import load_case, verify
from refnorm.golden.safetensors import save_file

ATTRS = '{"normalized_shape": [16], "eps": 1e-5}'


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def trace(tmp_path):
    """An .npz of LayerNorm tensors (float32, with a cotangent)."""
    r = np.random.default_rng(7)
    path = tmp_path / "trace.npz"
    np.savez(path, x=(r.standard_normal((3, 16)) + 4.0).astype(np.float32), weight=np.ones(16, np.float32),
             bias=np.zeros(16, np.float32), dy=r.standard_normal((3, 16)).astype(np.float32))
    return path


def test_case_is_a_subcommand():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert "case" in sub.choices


def test_case_writes_a_case_that_check_replays(trace, tmp_path, capsys):
    out_dir = tmp_path / "cases"
    code, out, err = run(capsys, "case", "--op", "layer_norm", "--inputs", trace, "--attrs", ATTRS,
                         "--out", out_dir)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == ("case layer_norm/user__float32 (statistical; x float32 [3, 16], weight float32 [16], "
                        "bias float32 [16], dy float32 [3, 16])")
    case = load_case("layer_norm/user__float32", root=out_dir)
    for name, tol in case.tolerances.items():  # one line per output: its shape and tolerance
        line = next(ln for ln in lines if ln.split()[:1] == [name])
        assert str(list(case.expected[name].shape)) in line and f"rtol {tol['rtol']:.3g}" in line
    assert f"wrote {(out_dir / 'layer_norm' / 'user__float32.safetensors').absolute()}" in out
    assert f"replay: refnorm check --backend SPEC --golden-dir {out_dir}" in lines
    assert case.description == ("trace.npz: x float32 [3, 16], weight float32 [16], bias float32 [16], "
                                "dy float32 [3, 16]")
    assert verify(out_dir) == []
    # the replay command, with refnorm itself as the backend, passes; verify agrees
    code, out, _ = run(capsys, "check", "--backend", "refnorm", "--golden-dir", out_dir, "--quiet")
    assert code == 0 and "3 passed, 0 failed" in out
    assert run(capsys, "verify", out_dir, "--quiet")[0] == 0
    # the same id again replaces the case; another name adds one beside it
    code, out, _ = run(capsys, "case", "--op", "layer_norm", "--inputs", trace, "--attrs", ATTRS, "--out", out_dir)
    assert code == 0 and "replaced " in out
    code, out, _ = run(capsys, "case", "--op", "layer_norm", "--inputs", trace, "--attrs", ATTRS, "--out", out_dir,
                       "--name", "step_2")
    assert code == 0 and out.startswith("case layer_norm/step_2__float32 ")
    assert sorted(c["id"] for c in json.loads((out_dir / "manifest.json").read_text())["cases"]) == [
        "layer_norm/step_2__float32", "layer_norm/user__float32"]


def test_default_out_and_attrs_from_a_file(trace, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "attrs.json").write_text(ATTRS)
    code, out, err = run(capsys, "case", "--op", "layer_norm", "--inputs", trace, "--attrs", "@attrs.json")
    assert code == 0, err
    assert "replay: refnorm check --backend SPEC --golden-dir refnorm-cases" in out
    assert load_case("layer_norm/user__float32", root=tmp_path / "refnorm-cases").attrs == json.loads(ATTRS)


def test_bfloat16_safetensors_with_running_statistics(tmp_path, capsys):
    r = np.random.default_rng(3)
    bf = ml_dtypes.bfloat16
    path = tmp_path / "bn.safetensors"
    save_file({"x": r.standard_normal((6, 4)).astype(bf), "running_mean": np.zeros(4, np.float32),
               "running_var": np.ones(4, np.float32), "dy": r.standard_normal((6, 4)).astype(bf)}, path)
    code, out, err = run(capsys, "case", "--op", "batch_norm", "--inputs", path, "--attrs", '{"training": true}',
                         "--out", tmp_path / "cases", "--name", "bn_trace")
    assert code == 0, err
    assert out.startswith("case batch_norm/bn_trace__bfloat16 (statistical; x bfloat16 [6, 4], running_mean float32 "
                          "[4], running_var float32 [4], dy bfloat16 [6, 4])")
    assert "new_running_var_onnx" in out
    code, out, _ = run(capsys, "check", "--backend", "numpy32", "--golden-dir", tmp_path / "cases", "--quiet")
    assert code == 0


def test_nan_outputs_are_announced(tmp_path, capsys):
    path = tmp_path / "nan.npz"
    x = np.ones((2, 16), np.float32)
    x[0, 3] = np.nan
    np.savez(path, x=x)
    code, out, err = run(capsys, "case", "--op", "layer_norm", "--inputs", path, "--attrs", ATTRS,
                         "--out", tmp_path / "cases")
    assert code == 0, err
    assert "  expects NaN where refnorm gives NaN on these tensors (y: 16 of 32; mean: 1 of 2; rstd: 1 of 2)" in out


def _bad_npz(tmp_path, name, **tensors):
    path = tmp_path / name
    np.savez(path, **tensors)
    return path


@pytest.mark.parametrize("what, argv, message", [
    ("unknown op", ["--op", "layer_nrom", "--attrs", ATTRS], "op 'layer_nrom' is not a refnorm op; known ops: "),
    ("bad JSON", ["--op", "layer_norm", "--attrs", "{normalized_shape: 16}"], "--attrs is not valid JSON"),
    ("not an object", ["--op", "layer_norm", "--attrs", "[16]"],
     "--attrs must be a JSON object of argument -> value, got a JSON list"),
    ("missing attrs file", ["--op", "layer_norm", "--attrs", "@nowhere.json"],
     "--attrs @nowhere.json: no such file 'nowhere.json'"),
    ("missing attribute", ["--op", "layer_norm"], "layer_norm needs the attribute normalized_shape in attrs"),
    ("unknown attribute", ["--op", "layer_norm", "--attrs", '{"normalized_shape": [16], "epsilon": 1e-5}'],
     "attrs['epsilon']: layer_norm has no attribute 'epsilon'"),
    ("unknown tensor", ["--op", "rms_norm", "--attrs", ATTRS], "rms_norm: tensors ['bias'] are not arguments of "),
    ("shape", ["--op", "layer_norm", "--attrs", '{"normalized_shape": [15]}'],
     "normalized_shape (15,) must equal the trailing dimensions of x, got x of shape (3, 16)"),
    ("bad name", ["--op", "layer_norm", "--attrs", ATTRS, "--name", "my case"],
     "name 'my case' must be letters, digits and '_'"),
])
def test_usage_errors_are_one_line_and_exit_2(trace, tmp_path, monkeypatch, capsys, what, argv, message):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "case", "--inputs", trace, *argv)
    assert (code, out) == (2, ""), what
    assert err.startswith("refnorm case: error: ") and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "refnorm-cases").exists()  # nothing written


def test_bad_files_exit_2(tmp_path, capsys):
    ints = _bad_npz(tmp_path, "ints.npz", x=np.ones((3, 16), np.int32))
    objects = tmp_path / "objects.npz"
    np.savez(objects, x=np.array([{"a": 1}], dtype=object), allow_pickle=True)
    for path, message in [(tmp_path / "missing.npz", f"--inputs {tmp_path / 'missing.npz'}: no such file"),
                          (ints, f"{ints}: tensor 'x' has dtype int32; a case holds floating-point tensors"),
                          (objects, f"{objects}: tensor 'x' is an object array, refused"),
                          (tmp_path / "attrs.json", "expected a .safetensors or .npz file, got suffix '.json'")]:
        if path.suffix == ".json":
            path.write_text("{}")
        code, out, err = run(capsys, "case", "--op", "layer_norm", "--inputs", path, "--attrs", ATTRS,
                             "--out", tmp_path / "cases")
        assert (code, out) == (2, "") and err.startswith("refnorm case: error: ") and message in err, err


def test_traceback_on_request(trace, capsys):
    code, out, err = run(capsys, "case", "--op", "layer_norm", "--inputs", trace, "--traceback")
    assert code == 2 and err.startswith("Traceback (most recent call last):")
    assert err.splitlines()[-1].startswith("ValueError: layer_norm needs the attribute normalized_shape")


def test_an_out_dir_that_is_not_a_corpus_is_refused(trace, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    code, out, err = run(capsys, "case", "--op", "layer_norm", "--inputs", trace, "--attrs", ATTRS,
                         "--out", tmp_path)
    assert code == 1 and "not a golden corpus" in err and (tmp_path / "notes.txt").read_text() == "mine"


def test_required_options(capsys):
    with pytest.raises(SystemExit) as info:
        main(["case", "--op", "layer_norm"])
    assert info.value.code == 2 and "--inputs" in capsys.readouterr().err
