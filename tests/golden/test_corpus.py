"""The corpus: generate (deterministic, atomic), verify (every defect named),
load_cases (hash-checked) and GoldenCase.assert_close.

These tests run on a small synthetic catalogue (``install_fake``) so they
exercise the corpus machinery alone, independent of the real case catalogue.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat

import ml_dtypes
import numpy as np
import pytest

import refnorm
from refnorm.golden import build, catalogue, comparison, corpus, tolerance
from refnorm.golden.build import BuiltCase
from refnorm.golden.casespec import CaseSpec
from refnorm.golden.comparison import Comparison
from refnorm.golden.corpus import GoldenCase, Problem, SelectionError, generate, load_case, load_cases, verify
from refnorm.golden.dtypes import DTYPES
from refnorm.golden.manifest import ManifestError, dumps_manifest, load_manifest
from refnorm.golden.safetensors import GoldenFormatError, dumps, load_file

# ----------------------------------------------------------------------------- a synthetic catalogue


def _spec(op, name, dtype, tier="statistical", shape=(3, 5), expect=None, large=False, ns=None):
    ns = list(shape[-1:]) if ns is None else ns
    return CaseSpec(f"{op}/{name}__{dtype}", op, name, tier, dtype, {"normalized_shape": ns, "eps": 1e-5},
                    {"x": list(shape)}, {"x": "normal(-2.3, 0.5)"}, 11, expect or {"kind": "value"},
                    f"{name} rows", large)


def fake_catalogue(include_large=False):
    specs = [_spec("layer_norm", "basic", d) for d in DTYPES]
    specs += [_spec("rms_norm", "exact_rows", "float32", tier="exact"),
              _spec("layer_norm", "nan_row", "float32", tier="adversarial", expect={"kind": "nan", "where": "row 0"}),
              _spec("layer_norm", "bad_shape", "float32", tier="adversarial", ns=[4],
                    expect={"kind": "error", "type": "ValueError", "match": "normalized_shape"}),
              _spec("layer_norm", "scalar_row", "float64", shape=(4, 1)),
              _spec("layer_norm", "big", "float32", shape=(64, 33), large=True)]
    return [s for s in specs if include_large or not s.large]


def fake_expected_from_inputs(spec, inputs):
    x = inputs["x"]
    ns = tuple(spec.attrs["normalized_shape"])
    if spec.op == "layer_norm":
        y = refnorm.layer_norm(x, ns, inputs.get("weight"), inputs.get("bias"), eps=spec.attrs["eps"])
        return {"y": y, "dx": refnorm.layer_norm_backward(inputs["dy"], x, ns, inputs.get("weight"),
                                                          inputs.get("bias"), eps=spec.attrs["eps"])["x"]}
    return {"y": refnorm.rms_norm(x, ns, inputs.get("weight"), eps=spec.attrs["eps"])}


def fake_tolerances(spec, inputs, expected):
    tols, scales = {}, {}
    for name, e in expected.items():
        tensor = spec.op == "rms_norm"
        u = float(ml_dtypes.finfo(DTYPES[spec.dtype]).eps)
        tols[name] = {"atol": 0.0, "rtol": 8 * u, "ulp": 2 if tensor else None,
                      "scale": "tensor" if tensor else "expected", "derivation": "fake: 8 u"}
        if tensor:
            scales[name] = np.abs(e) + 1.0
    return tols, scales


def fake_build_case(spec):
    rng = np.random.default_rng(spec.seed)
    shape = spec.shapes["x"]
    dt = DTYPES[spec.dtype]
    inputs = {"x": (-2.3 + 0.5 * rng.standard_normal(shape)).astype(dt),
              "weight": (1 + 0.5 * rng.standard_normal(shape[-1:])).astype(dt)}
    if spec.op == "layer_norm":
        inputs["bias"] = (0.3 * rng.standard_normal(shape[-1:])).astype(dt)
        inputs["dy"] = rng.standard_normal(shape).astype(dt)
    if spec.expect["kind"] == "nan":
        inputs["x"][0, 0] = np.nan
    if spec.expect["kind"] == "error":
        return BuiltCase(spec=spec, inputs=inputs, expected={})
    expected = fake_expected_from_inputs(spec, inputs)
    tols, scales = fake_tolerances(spec, inputs, expected)
    return BuiltCase(spec=spec, inputs=inputs, expected=expected, scales=scales, tolerances=tols)


def fake_compare(expected, actual, tol, scale=None, *, dtype):
    e, a = np.asarray(expected, np.float64), np.asarray(actual, np.float64)
    s = np.abs(e) if tol["scale"] == "expected" else scale
    allowed = tol["atol"] + tol["rtol"] * s
    err = np.abs(a - e)
    same = (np.isnan(a) & np.isnan(e)) | (a == e)
    ratio = np.where(same, 0.0, err / np.where(allowed > 0, allowed, np.finfo(float).tiny))
    ratio = np.where(np.isnan(ratio), np.inf, ratio)
    bad = ratio > 1
    idx = np.unravel_index(int(np.argmax(ratio)), e.shape) if e.size else ()
    spacing = np.spacing(np.abs(e[idx]).astype(DTYPES[dtype])).astype(np.float64) if e.size else 1.0
    return Comparison(ok=not bad.any(), worst_ratio=float(ratio.max()) if e.size else 0.0,
                      worst_index=idx, worst_ulps=float(err[idx] / spacing) if e.size else 0.0,
                      n_bad=int(bad.sum()), message="fake comparison")


def install_fake(monkeypatch):
    """Point the corpus (and ``refnorm list``) at the synthetic catalogue, builder
    and tolerance model, and ``GoldenCase.assert_close`` at the fake comparison,
    in the modules where they live."""
    monkeypatch.setattr(catalogue, "catalogue", fake_catalogue)
    monkeypatch.setattr(build, "build_case", fake_build_case)
    monkeypatch.setattr(build, "expected_from_inputs", fake_expected_from_inputs)
    monkeypatch.setattr(tolerance, "tolerances", fake_tolerances)
    monkeypatch.setattr(comparison, "compare", fake_compare)
    monkeypatch.delenv(corpus.ENV_VAR, raising=False)


@pytest.fixture
def fake(monkeypatch):
    install_fake(monkeypatch)


@pytest.fixture
def golden(fake, tmp_path):
    out = tmp_path / "golden"
    generate(out)
    return out


def snapshot(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def rewrite_case(root, case_id, fn):
    """Rewrite a case file through ``fn(tensors)`` and fix its sha256 in the manifest
    (a consistent, plausible-looking forgery that only recomputation can catch)."""
    m = load_manifest(root)
    entry = next(c for c in m["cases"] if c["id"] == case_id)
    path = root / entry["file"]
    tensors, meta = load_file(path)
    fn(tensors)
    data = dumps(tensors, meta)
    path.write_bytes(data)
    entry["sha256"] = hashlib.sha256(data).hexdigest()
    (root / "manifest.json").write_text(dumps_manifest(m))


# ----------------------------------------------------------------------------- generate


def test_generate_layout_and_manifest(golden):
    m = load_manifest(golden)
    ids = [c["id"] for c in m["cases"]]
    assert ids == sorted(s.id for s in fake_catalogue())
    files = sorted(p.relative_to(golden).as_posix() for p in golden.rglob("*.safetensors"))
    assert files == sorted(f"{s.op}/{s.name}__{s.dtype}.safetensors" for s in fake_catalogue())
    e = next(c for c in m["cases"] if c["id"] == "layer_norm/basic__bfloat16")
    assert e["tensors"]["x"] == {"dtype": "BF16", "shape": [3, 5], "role": "input"}
    assert e["tensors"]["y"] == {"dtype": "F64", "shape": [3, 5], "role": "expected"}
    assert e["file"] == "layer_norm/basic__bfloat16.safetensors"
    assert e["attrs"] == {"normalized_shape": [5], "eps": 1e-5} and e["seed"] == 11 and e["large"] is False
    t, meta = load_file(golden / e["file"])
    assert meta == {"case": e["id"], "format": "refnorm-golden", "format_version": "1"}
    assert t["x"].dtype == np.dtype(ml_dtypes.bfloat16)


def test_scale_tensors_and_error_cases(golden):
    m = {c["id"]: c for c in load_manifest(golden)["cases"]}
    rms = m["rms_norm/exact_rows__float32"]
    assert rms["tensors"]["y.scale"]["role"] == "scale" and rms["tolerances"]["y"]["scale"] == "tensor"
    err = m["layer_norm/bad_shape__float32"]
    assert {t["role"] for t in err["tensors"].values()} == {"input"} and err["tolerances"] == {}
    t, _ = load_file(golden / err["file"])
    assert sorted(t) == ["bias", "dy", "weight", "x"]


def test_generate_is_byte_deterministic(fake, tmp_path):
    generate(tmp_path / "a")
    generate(tmp_path / "b")
    a, b = snapshot(tmp_path / "a"), snapshot(tmp_path / "b")
    assert a == b and "manifest.json" in a
    generate(tmp_path / "a")  # regenerate in place
    assert snapshot(tmp_path / "a") == a


def test_generate_selection_stats_and_progress(fake, tmp_path):
    calls = []
    stats = generate(tmp_path / "g", ops=["layer_norm"], dtypes="float32,float16", tiers=["statistical"],
                     progress=lambda d, t: calls.append((d, t)))
    assert stats.cases == 2 and stats.by_op == {"layer_norm": 2}
    assert calls == [(1, 2), (2, 2)]
    assert stats.bytes == sum(len(v) for v in snapshot(tmp_path / "g").values())
    stats = generate(tmp_path / "g", include_large=True)
    assert stats.cases == len(fake_catalogue(include_large=True))
    with pytest.raises(SelectionError, match="unknown tier 'fuzzy'"):
        generate(tmp_path / "g", tiers=["fuzzy"])
    with pytest.raises(SelectionError, match="no catalogue case"):
        generate(tmp_path / "g", ops=["nope"])


def test_generated_files_have_ordinary_permissions(golden):
    mask = os.umask(0o022)
    os.umask(mask)
    for p in [golden, *golden.rglob("*")]:
        mode = stat.S_IMODE(p.stat().st_mode)
        want = (0o777 if p.is_dir() else 0o666) & ~mask
        assert mode == want, (p, oct(mode))


def test_generate_refuses_to_replace_a_non_corpus(fake, tmp_path):
    d = tmp_path / "home"
    d.mkdir()
    (d / "precious.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a golden corpus"):
        generate(d)
    assert (d / "precious.txt").read_text() == "keep me"
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match="not a directory"):
        generate(tmp_path / "file")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert generate(empty).cases > 0


def test_interrupted_generate_leaves_the_old_corpus_intact(golden, monkeypatch):
    before = snapshot(golden)
    real_save = corpus.save_file
    written = []

    def failing_save(tensors, path, metadata=None):
        if len(written) == 3:
            raise KeyboardInterrupt("simulated interruption")
        written.append(path)
        return real_save(tensors, path, metadata)

    monkeypatch.setattr(corpus, "save_file", failing_save)
    with pytest.raises(KeyboardInterrupt):
        generate(golden)
    assert snapshot(golden) == before
    assert verify(golden) == []
    assert sorted(p.name for p in golden.parent.iterdir()) == ["golden"]  # no temp dirs left


def test_failure_in_the_final_swap_keeps_the_old_corpus(golden, monkeypatch):
    before = snapshot(golden)
    real_rename = os.rename
    calls = []

    def rename(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:  # old -> aside worked; new -> place fails
            raise OSError("simulated rename failure")
        return real_rename(src, dst)

    monkeypatch.setattr(corpus.os, "rename", rename)
    with pytest.raises(OSError, match="simulated"):
        generate(golden)
    assert snapshot(golden) == before
    assert sorted(p.name for p in golden.parent.iterdir()) == ["golden"]


def test_failing_case_build_leaves_no_temp_dir(fake, tmp_path, monkeypatch):
    def boom(spec):
        raise RuntimeError(f"cannot build {spec.id}")

    monkeypatch.setattr(build, "build_case", boom)
    with pytest.raises(RuntimeError, match="cannot build"):
        generate(tmp_path / "new")
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- verify


def test_verify_clean_corpus(golden):
    assert verify(golden) == []
    assert verify(golden, recompute=False) == []


def test_verify_reports_altered_byte(golden):
    path = golden / "layer_norm" / "basic__float32.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))
    problems = verify(golden)
    assert problems == [Problem("layer_norm/basic__float32.safetensors", problems[0].reason)]
    assert "sha256 mismatch" in problems[0].reason and "layer_norm/basic__float32" in problems[0].reason
    assert str(problems[0]).startswith("layer_norm/basic__float32.safetensors: ")


def test_verify_reports_consistently_forged_expected_values(golden):
    def nudge(t):
        t["y"][1, 2] = np.nextafter(t["y"][1, 2], np.inf)

    rewrite_case(golden, "layer_norm/basic__float16", nudge)
    (p,) = verify(golden)
    assert p.file == "layer_norm/basic__float16.safetensors"
    assert "'y' is not reproduced bit for bit" in p.reason and "(1, 2)" in p.reason
    assert verify(golden, recompute=False) == []


def test_verify_reports_forged_scale_and_tolerance(golden):
    rewrite_case(golden, "rms_norm/exact_rows__float32", lambda t: t["y.scale"].__imul__(2.0))
    (p,) = verify(golden)
    assert "scale of 'y' is not reproduced" in p.reason
    m = load_manifest(golden)
    next(c for c in m["cases"] if c["id"] == "layer_norm/basic__float32")["tolerances"]["dx"]["rtol"] = 1.0
    (golden / "manifest.json").write_text(dumps_manifest(m))
    got = {p.file: p.reason for p in verify(golden)}
    assert "tolerances of ['dx'] differ" in got["layer_norm/basic__float32.safetensors"]


def test_verify_checks_only_the_selected_cases(golden):
    rewrite_case(golden, "layer_norm/basic__float16", lambda t: t["y"].__imul__(2.0))
    rewrite_case(golden, "rms_norm/exact_rows__float32", lambda t: t["y.scale"].__imul__(2.0))
    (golden / "notes.txt").write_text("not part of a selection")
    assert {p.file for p in verify(golden, ops=["layer_norm"])} == {"layer_norm/basic__float16.safetensors"}
    assert {p.file for p in verify(golden, ops="rms_norm")} == {"rms_norm/exact_rows__float32.safetensors"}
    assert verify(golden, ops=["layer_norm"], dtypes=["float32", "float64"]) == []
    assert len(verify(golden)) == 3  # both cases and the stray file
    with pytest.raises(SelectionError, match="no case"):
        verify(golden, ops=["group_norm"])
    with pytest.raises(SelectionError, match="unknown dtype"):
        verify(golden, dtypes=["int8"])


def test_verify_reports_header_mismatch_missing_and_extra_files(golden):
    rewrite_case(golden, "layer_norm/basic__float64", lambda t: t.update(extra=np.zeros(1)))
    rewrite_case(golden, "layer_norm/basic__float32", lambda t: t.update(x=t["x"].astype(np.float64)))
    (golden / "layer_norm" / "basic__float16.safetensors").unlink()
    (golden / "layer_norm" / "stray.safetensors").write_bytes(b"")
    (golden / "notes.txt").write_text("hi")
    got = {p.file: p.reason for p in verify(golden)}
    assert "not in the manifest" in got["layer_norm/basic__float64.safetensors"]
    assert "F64[3, 5] in the file, F32[3, 5] in the manifest" in got["layer_norm/basic__float32.safetensors"]
    assert "missing" in got["layer_norm/basic__float16.safetensors"]
    assert got["layer_norm/stray.safetensors"] == "file is not listed in the manifest"
    assert got["notes.txt"] == "file is not listed in the manifest"


def test_verify_reports_malformed_file_and_manifest(golden):
    rewrite_case(golden, "layer_norm/basic__float64", lambda t: None)
    m = load_manifest(golden)
    path = golden / "layer_norm" / "basic__float64.safetensors"
    path.write_bytes(b"\x00" * 4)
    next(c for c in m["cases"] if c["id"] == "layer_norm/basic__float64")["sha256"] = \
        hashlib.sha256(b"\x00" * 4).hexdigest()
    (golden / "manifest.json").write_text(dumps_manifest(m))
    (p,) = verify(golden)
    assert "malformed file" in p.reason and "shorter than" in p.reason
    (golden / "manifest.json").write_text("{")
    (p,) = verify(golden)
    assert p.file == "manifest.json" and "not valid JSON" in p.reason
    assert verify(golden.parent / "nowhere")[0].reason.startswith("no golden corpus here")


def test_verify_reports_a_recompute_that_raises(golden, monkeypatch):
    def broken(spec, inputs):
        raise ZeroDivisionError("oops")

    monkeypatch.setattr(build, "expected_from_inputs", broken)
    problems = verify(golden)
    assert problems and all("raised ZeroDivisionError: oops" in p.reason for p in problems)
    # error cases are never recomputed
    assert not any("bad_shape" in p.file for p in problems)


@pytest.mark.parametrize("bad_file", ["../escape.safetensors", "/abs/olute.safetensors"])
def test_verify_and_load_refuse_escaping_paths(golden, bad_file):
    m = load_manifest(golden)
    m["cases"][0]["file"] = bad_file
    (golden / "manifest.json").write_text(json.dumps(m))
    (p,) = verify(golden)
    assert p.file == "manifest.json"
    with pytest.raises(ManifestError):
        list(load_cases(root=golden))


def test_symlink_escape_is_refused(golden, tmp_path):
    outside = tmp_path / "outside.safetensors"
    target = golden / "layer_norm" / "basic__float32.safetensors"
    outside.write_bytes(target.read_bytes())
    target.unlink()
    target.symlink_to(outside)
    (p,) = verify(golden)
    assert p.file == "manifest.json" and "outside the corpus directory" in p.reason
    with pytest.raises(ManifestError, match="outside the corpus"):
        list(load_cases(root=golden))


# ----------------------------------------------------------------------------- load


def test_load_cases_round_trip(golden):
    cases = list(load_cases(root=golden))
    assert [c.id for c in cases] == sorted(s.id for s in fake_catalogue())
    c = next(c for c in cases if c.id == "layer_norm/basic__bfloat16")
    assert isinstance(c, GoldenCase)
    assert (c.op, c.tier, c.dtype, c.name) == ("layer_norm", "statistical", "bfloat16", "basic")
    assert c.inputs["x"].dtype == np.dtype(ml_dtypes.bfloat16) and c.expected["y"].dtype == np.float64
    spec = next(s for s in fake_catalogue() if s.id == c.id)
    built = fake_build_case(spec)
    for k in built.inputs:
        assert np.array_equal(c.inputs[k].view(np.uint16), built.inputs[k].view(np.uint16))
    assert np.array_equal(c.expected["y"], built.expected["y"])
    assert c.tolerances == built.tolerances and c.scales == {}
    assert c.attrs == {"normalized_shape": [5], "eps": 1e-5} and c.expect == {"kind": "value"}
    assert c.description == "basic rows" and c.seed == 11 and c.file.is_file()
    rms = next(c for c in cases if c.op == "rms_norm")
    assert sorted(rms.scales) == ["y"] and "y.scale" not in rms.expected
    err = next(c for c in cases if c.expect["kind"] == "error")
    assert err.expected == {} and err.tolerances == {}


def test_load_cases_filters(golden):
    ids = [c.id for c in load_cases(ops=["rms_norm"], root=golden)]
    assert ids == ["rms_norm/exact_rows__float32"]
    ids = [c.id for c in load_cases(dtypes=["bfloat16", "float16"], tiers=["statistical"], root=golden)]
    assert ids == ["layer_norm/basic__bfloat16", "layer_norm/basic__float16"]
    assert list(load_cases(ops=["group_norm"], root=golden)) == []
    with pytest.raises(SelectionError, match="unknown dtype 'int8'"):
        list(load_cases(dtypes=["int8"], root=golden))


def test_load_refuses_altered_file(golden):
    path = golden / "rms_norm" / "exact_rows__float32.safetensors"
    data = bytearray(path.read_bytes())
    data[100] ^= 0x40
    path.write_bytes(bytes(data))
    with pytest.raises(GoldenFormatError, match="sha256 mismatch") as info:
        list(load_cases(root=golden))
    assert "exact_rows__float32.safetensors" in str(info.value)
    assert len(list(load_cases(ops=["layer_norm"], root=golden))) > 0  # other files still load


def test_load_refuses_missing_file(golden):
    (golden / "rms_norm" / "exact_rows__float32.safetensors").unlink()
    with pytest.raises(GoldenFormatError, match="missing"):
        load_case("rms_norm/exact_rows__float32", root=golden)


def test_default_root_and_env_override(golden, monkeypatch):
    assert corpus.default_root() == (
        __import__("pathlib").Path(refnorm.__file__).resolve().parents[1] / "spec" / "golden")
    monkeypatch.setenv(corpus.ENV_VAR, str(golden))
    assert corpus.default_root() == golden
    assert len(list(load_cases(ops="rms_norm"))) == 1
    assert load_case("layer_norm/basic__float32").id == "layer_norm/basic__float32"
    with pytest.raises(KeyError, match="no golden case"):
        load_case("layer_norm/nope__float32")


def test_assert_close(golden):
    c = load_case("layer_norm/basic__float32", root=golden)
    c.assert_close("y", c.expected["y"])
    c.assert_close("y", c.expected["y"].astype(np.float32))  # within 8 u of float32
    bad = c.expected["y"].copy()
    bad[2, 3] += 1e-3
    with pytest.raises(AssertionError) as info:
        c.assert_close("y", bad)
    msg = str(info.value)
    for part in ("layer_norm", "[layer_norm/basic__float32]", "output 'y'", "x tolerance", "(2, 3)", "ulp",
                 "1 of 15", "repro: from refnorm.golden import load_case"):
        assert part in msg, (part, msg)
    with pytest.raises(AssertionError, match="shape"):
        c.assert_close("y", bad[:2])
    with pytest.raises(KeyError, match="no expected output 'dweight'"):
        c.assert_close("dweight", bad)
    nan = load_case("layer_norm/nan_row__float32", root=golden)
    nan.assert_close("y", nan.expected["y"])  # NaN matches NaN


def test_numpy_scalars_in_tolerances_and_attrs_become_plain_json(fake, tmp_path, monkeypatch):
    def build_with_numpy_scalars(spec):
        b = fake_build_case(spec)
        for tol in b.tolerances.values():
            tol.update(atol=np.float32(0.5), ulp=np.int64(3))
        return b

    monkeypatch.setattr(build, "build_case", build_with_numpy_scalars)
    monkeypatch.setattr(tolerance, "tolerances", lambda *a: (
        {k: dict(v, atol=0.5, ulp=3) for k, v in fake_tolerances(*a)[0].items()}, fake_tolerances(*a)[1]))
    generate(tmp_path / "g", ops=["rms_norm"])
    (entry,) = load_manifest(tmp_path / "g")["cases"]
    assert entry["tolerances"]["y"]["ulp"] == 3 and type(entry["tolerances"]["y"]["ulp"]) is int
    assert entry["tolerances"]["y"]["atol"] == 0.5
    assert verify(tmp_path / "g") == []
