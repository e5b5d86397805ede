"""A user's own tensors as a golden case (:mod:`refnorm.golden.usercase`).

The case must behave like any catalogue case: refnorm's expected values are
computed from exactly the stored tensors (the test recomputes them with the
public functions), ``verify`` recomputes them clean, and the harness passes
refnorm and numpy32 on it and fails a wrong backend.  Bad input is refused
with an error naming what is wrong, before anything is written.
"""

from __future__ import annotations

import json
import pickle
import types
import zipfile

import ml_dtypes
import numpy as np
import pytest

import refnorm
import refnorm.golden
from refnorm.conformance.backends import load_backend
from refnorm.conformance.harness import check
from refnorm.golden import build, usercase
from refnorm.golden.catalogue import catalogue
from refnorm.golden.corpus import load_case, verify, write_cases
from refnorm.golden.safetensors import GoldenFormatError, save_file
from refnorm.golden.usercase import case_from_tensors, describe_tensors, load_tensors

BF16 = np.dtype(ml_dtypes.bfloat16)


def _rng(seed=0):
    return np.random.default_rng(seed)


def layer_norm_tensors(dtype=np.float32, weight_dtype=None, seed=0):
    """A trace-like LayerNorm batch: mean far from zero (kappa ~ 10), affine, with a cotangent."""
    r = _rng(seed)
    wd = weight_dtype or dtype
    return {"x": (r.standard_normal((6, 24)) * 0.5 + 5.0).astype(dtype),
            "weight": (1.0 + 0.2 * r.standard_normal(24)).astype(wd),
            "bias": (0.1 * r.standard_normal(24)).astype(wd),
            "dy": r.standard_normal((6, 24)).astype(dtype)}


def add_rms_norm_tensors(seed=1):
    """A fused residual add + RMSNorm in bfloat16 with a float32 weight and both cotangents."""
    r = _rng(seed)
    return {"x": r.standard_normal((4, 32)).astype(BF16), "residual": r.standard_normal((4, 32)).astype(BF16),
            "weight": (1.0 + 0.1 * r.standard_normal(32)).astype(np.float32),
            "dy": r.standard_normal((4, 32)).astype(BF16), "dh": r.standard_normal((4, 32)).astype(BF16)}


def batch_norm_tensors(seed=2):
    """BatchNorm in training mode with running statistics (float16)."""
    r = _rng(seed)
    return {"x": (r.standard_normal((8, 3, 5)) * 2.0 + 1.0).astype(np.float16),
            "running_mean": r.standard_normal(3).astype(np.float16),
            "running_var": r.uniform(0.5, 2.0, 3).astype(np.float16),
            "weight": (1.0 + 0.3 * r.standard_normal(3)).astype(np.float16),
            "bias": r.standard_normal(3).astype(np.float16),
            "dy": r.standard_normal((8, 3, 5)).astype(np.float16)}


LN_ATTRS = {"normalized_shape": [24], "eps": 1e-5}
ARN_ATTRS = {"normalized_shape": [32], "eps": 1e-6}
BN_ATTRS = {"training": True, "momentum": 0.1, "eps": 1e-5}


def write_npz(path, tensors):
    np.savez(path, **tensors)
    return path


def write_safetensors(path, tensors):
    save_file(tensors, path)
    return path


# ----------------------------------------------------------------------------- round trip


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Three user cases, read back from an .npz (float32 LayerNorm) and .safetensors
    files (bfloat16 LayerNorm with float32 parameters, bfloat16 add_rms_norm,
    float16 BatchNorm), written into one corpus: (directory, built cases)."""
    tmp = tmp_path_factory.mktemp("user")
    files = [
        ("layer_norm", write_npz(tmp / "ln.npz", layer_norm_tensors()), LN_ATTRS, "trace_npz"),
        ("layer_norm", write_safetensors(tmp / "ln.safetensors", layer_norm_tensors(BF16, np.float32, seed=3)),
         LN_ATTRS, "trace_bf16"),
        ("add_rms_norm", write_safetensors(tmp / "arn.safetensors", add_rms_norm_tensors()), ARN_ATTRS, "fused"),
        ("batch_norm", write_safetensors(tmp / "bn.safetensors", batch_norm_tensors()), BN_ATTRS, "train"),
    ]
    built = [case_from_tensors(op, load_tensors(path), attrs, name=name) for op, path, attrs, name in files]
    out = tmp / "cases"
    assert write_cases(out, built) == [b.spec.id for b in built]
    return out, built


def test_the_cases_are_what_was_given(corpus):
    out, built = corpus
    ids = [b.spec.id for b in built]
    assert ids == ["layer_norm/trace_npz__float32", "layer_norm/trace_bf16__bfloat16",
                   "add_rms_norm/fused__bfloat16", "batch_norm/train__float16"]
    for b in built:
        s = b.spec
        assert (s.tier, s.seed, s.expect, s.large) == ("statistical", 0, {"kind": "value"}, False)
        case = load_case(s.id, root=out)
        assert case.dtype == s.dtype and case.attrs == s.attrs
        for name, a in b.inputs.items():
            assert case.inputs[name].dtype == a.dtype and np.array_equal(case.inputs[name], a)
    # mixed precision: the case dtype is x's; a parameter of another dtype says so in its recipe
    bf = built[1].spec
    assert bf.recipe == {"x": {"kind": "given"}, "weight": {"kind": "given", "dtype": "float32"},
                         "bias": {"kind": "given", "dtype": "float32"}, "dy": {"kind": "given"}}
    assert built[2].spec.recipe["weight"] == {"kind": "given", "dtype": "float32"}
    assert built[1].spec.description == ("user tensors: x bfloat16 [6, 24], weight float32 [24], bias float32 [24], "
                                         "dy bfloat16 [6, 24]")


def test_the_corpus_verifies_clean(corpus):
    out, _ = corpus
    assert verify(out) == []


@pytest.mark.parametrize("backend", ["refnorm", "numpy32"])
def test_correct_backends_pass_every_check(corpus, backend):
    out, built = corpus
    report = check(load_backend(backend), root=out)
    assert report.ok, [o.message for o in report.outcomes if o.status != "passed"]
    # every function the tensors call for is checked: forward, stats, backward, running update
    assert report.counts()["passed"] == len(report.outcomes)
    checked = {(o.case_id, o.function) for o in report.outcomes}
    for b in built:
        op = b.spec.op
        want = {op, f"{op}_stats", f"{op}_backward"} | ({f"{op}_running_stats"} if op == "batch_norm" else set())
        assert {f for c, f in checked if c == b.spec.id} == want, b.spec.id


def test_a_backend_one_percent_off_fails(corpus):
    """A LayerNorm forward one percent off fails the float32 user case (for bfloat16, whose
    own rounding is 0.4 %, one percent at kappa ~ 10 is within the derived tolerance)."""
    def layer_norm(*args, **kwargs):
        return refnorm.layer_norm(*args, **kwargs) * 1.01

    wrong = types.ModuleType("wrong")
    wrong.layer_norm = layer_norm
    out, _ = corpus
    report = check(wrong, root=out, ops=["layer_norm"], dtypes=["float32"])
    assert not report.ok
    failed = [o for o in report.outcomes if o.status == "failed"]
    assert [(o.case_id, o.function) for o in failed] == [("layer_norm/trace_npz__float32", "layer_norm")]
    assert all("out of tolerance" in o.message for o in failed)


def test_expected_values_are_refnorms_outputs_on_the_stored_tensors(corpus):
    """Recomputed here with the public functions, from the tensors as stored: bit for bit."""
    _, (ln, ln_bf, arn, bn) = corpus
    for case in (ln, ln_bf):
        t, ns, eps = case.inputs, (24,), LN_ATTRS["eps"]
        y, stats = refnorm.layer_norm_stats(t["x"], ns, t["weight"], t["bias"], eps)
        g = refnorm.layer_norm_backward(t["dy"], t["x"], ns, t["weight"], t["bias"], eps)
        want = {"y": y, "mean": stats["mean"], "rstd": stats["rstd"], "dx": g["x"], "dweight": g["weight"],
                "dbias": g["bias"]}
        assert set(case.expected) == set(want)
        for k, v in want.items():
            assert case.expected[k].dtype == np.float64
            np.testing.assert_array_equal(case.expected[k], v, err_msg=k)
    t = arn.inputs
    y, h = refnorm.add_rms_norm(t["x"], t["residual"], (32,), t["weight"], 1e-6)
    g = refnorm.add_rms_norm_backward(t["dy"], t["dh"], t["x"], t["residual"], (32,), t["weight"], 1e-6)
    for k, v in {"y": y, "h": h, "dx": g["x"], "dresidual": g["residual"], "dweight": g["weight"]}.items():
        np.testing.assert_array_equal(arn.expected[k], v, err_msg=k)
    t = bn.inputs
    args = (t["x"], t["running_mean"], t["running_var"], t["weight"], t["bias"], True, 0.1, 1e-5)
    np.testing.assert_array_equal(bn.expected["y"], refnorm.batch_norm(*args))
    np.testing.assert_array_equal(bn.expected["dx"], refnorm.batch_norm_backward(t["dy"], *args)["x"])
    mean, var = refnorm.batch_norm_running_stats(t["x"], t["running_mean"], t["running_var"], 0.1)
    np.testing.assert_array_equal(bn.expected["new_running_mean_torch"], mean)
    np.testing.assert_array_equal(bn.expected["new_running_var_torch"], var)
    # the ONNX and Flax updates are there too, with the catalogue's momenta, recorded in the attrs
    assert bn.spec.attrs["running_stats"] == {"onnx": {"momentum": 0.9}, "flax": {"momentum": 0.99}}
    assert {"new_running_mean_onnx", "new_running_var_flax"} <= set(bn.expected)


def test_tolerances_come_from_the_model(corpus):
    """The tolerances are the model's for exactly these tensors (what verify checks), and are data:
    the far-from-zero mean of the trace widens y's tolerance over that of a centred batch."""
    _, (ln, *_) = corpus
    tols, scales = refnorm.golden.tolerance.tolerances(ln.spec, ln.inputs, ln.expected)
    assert tols == ln.tolerances and set(scales) == set(ln.scales)
    centred = layer_norm_tensors()
    centred["x"] = (centred["x"] - np.float32(5.0)).astype(np.float32)
    other = case_from_tensors("layer_norm", centred, LN_ATTRS)
    assert other.tolerances["y"]["atol"] < ln.tolerances["y"]["atol"]


@pytest.mark.parametrize("op", sorted({s.op for s in catalogue()}))
def test_a_catalogue_case_given_back_is_the_same_case(op):
    """The inputs a catalogue case draws, given back as user tensors, give the same
    expected values and tolerances: a user case is built exactly as the catalogue's.
    Per op, the float32 case with the most tensors (tangents and second-order
    cotangents too, grouped inputs, mixed-dtype parameters where the op has them)."""
    spec = max((s for s in catalogue() if s.op == op and s.tier == "statistical" and s.expect == {"kind": "value"}
                and s.dtype == "float32"), key=lambda s: len(s.shapes))
    want = build.build_case(spec)
    got = case_from_tensors(op, build.build_inputs(spec), spec.attrs, name="again")
    assert got.spec.dtype == "float32" and set(got.expected) == set(want.expected)
    assert got.spec.shapes == spec.shapes and got.spec.attrs == {**got.spec.attrs, **spec.attrs}
    for k, v in want.expected.items():
        np.testing.assert_array_equal(got.expected[k], v, err_msg=k)
    assert got.tolerances == want.tolerances


# ----------------------------------------------------------------------------- the case record


def test_the_callers_arrays_are_copied_not_touched():
    t = layer_norm_tensors()
    t["x"] = np.asfortranarray(t["x"])
    t["dy"] = np.repeat(t["dy"], 2, axis=1)[:, ::2]  # a strided view
    before = {k: v.copy() for k, v in t.items()}
    built = case_from_tensors("layer_norm", t, LN_ATTRS)
    for k, v in t.items():
        np.testing.assert_array_equal(v, before[k])
        assert built.inputs[k].flags.c_contiguous and built.inputs[k].flags.owndata
        assert not np.shares_memory(built.inputs[k], v)
    built.inputs["x"][0, 0] = 0.0
    assert t["x"][0, 0] == before["x"][0, 0]


def test_big_endian_arrays_are_stored_native(tmp_path):
    t = layer_norm_tensors(np.float64)
    t["x"] = t["x"].astype(">f8")
    path = write_npz(tmp_path / "be.npz", t)
    built = case_from_tensors("layer_norm", load_tensors(path), LN_ATTRS)
    assert built.spec.dtype == "float64" and built.inputs["x"].dtype == np.dtype("<f8").newbyteorder("=")
    np.testing.assert_array_equal(built.inputs["x"], t["x"])


def test_defaults_are_recorded_and_attrs_stored_as_json():
    t = batch_norm_tensors()
    built = case_from_tensors("batch_norm", t, {"training": True, "eps": np.float32(1e-3)})
    # the forward's defaults of the positional attributes left out are stated (momentum 0.1) ...
    assert built.spec.attrs["momentum"] == 0.1 and built.spec.attrs["eps"] == float(np.float32(1e-3))
    json.dumps(built.spec.attrs, allow_nan=False)
    # ... keyword-only ones are not (a backend is called without them)
    ln = case_from_tensors("layer_norm", layer_norm_tensors(), {"normalized_shape": 24})
    assert ln.spec.attrs == {"normalized_shape": [24], "eps": 1e-5}


def test_nan_outputs_make_a_nan_case(tmp_path):
    t = layer_norm_tensors()
    t["x"][2, 5] = np.nan
    built = case_from_tensors("layer_norm", t, LN_ATTRS, name="nan_row")
    assert built.spec.expect["kind"] == "nan"
    where = built.spec.expect["where"]
    assert "y: 24 of 144" in where and "mean: 1 of 6" in where and "dweight: all 24" in where
    write_cases(tmp_path, [built])
    assert verify(tmp_path) == []
    assert check(load_backend("refnorm"), root=tmp_path).ok


def test_description_and_name():
    built = case_from_tensors("layer_norm", layer_norm_tensors(), LN_ATTRS, name="step_1200",
                              description="LayerNorm 3 of the decoder at step 1200")
    assert built.spec.id == "layer_norm/step_1200__float32"
    assert built.spec.description == "LayerNorm 3 of the decoder at step 1200"


def test_the_package_exports_it_lazily():
    assert refnorm.golden.case_from_tensors is usercase.case_from_tensors
    assert refnorm.golden.write_cases is write_cases
    assert {"case_from_tensors", "write_cases"} <= set(refnorm.golden.__all__) <= set(dir(refnorm.golden))


# ----------------------------------------------------------------------------- refused input


def test_unknown_op():
    with pytest.raises(ValueError, match=r"op 'layer_nrom' is not a refnorm op; known ops: batch_norm, layer_norm"):
        case_from_tensors("layer_nrom", layer_norm_tensors(), LN_ATTRS)


def test_unknown_tensor_name():
    t = dict(layer_norm_tensors(), gamma=np.ones(24, np.float32))
    with pytest.raises(ValueError, match=r"tensors \['gamma'\] are not arguments of layer_norm\(\)"):
        case_from_tensors("layer_norm", t, LN_ATTRS)


def test_an_attribute_given_as_a_tensor_and_a_tensor_as_an_attribute():
    t = dict(layer_norm_tensors(), eps=np.array(1e-5, np.float32))
    with pytest.raises(ValueError, match=r"inputs \['eps'\]: attribute of layer_norm\(\), not tensors; give it "
                                         r"in attrs"):
        case_from_tensors("layer_norm", t, LN_ATTRS)
    with pytest.raises(ValueError, match=r"attrs\['weight'\]: 'weight' is a tensor argument of layer_norm\(\)"):
        case_from_tensors("layer_norm", layer_norm_tensors(), dict(LN_ATTRS, weight=[1.0] * 24))


def test_int_dtype():
    t = dict(layer_norm_tensors(), x=np.ones((6, 24), np.int32))
    with pytest.raises(TypeError, match=r"inputs\['x'\] has dtype int32; expected one of float64, float32, "
                                        r"float16, bfloat16"):
        case_from_tensors("layer_norm", t, LN_ATTRS)


def test_int_dtype_in_a_file(tmp_path):
    path = write_npz(tmp_path / "ints.npz", {"x": np.ones((2, 3), np.int64)})
    with pytest.raises(ValueError, match=r"ints.npz: tensor 'x' has dtype int64; a case holds floating-point"):
        load_tensors(path)
    header = json.dumps({"x": {"dtype": "I32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    header += b" " * (-len(header) % 8)
    path = tmp_path / "ints.safetensors"
    path.write_bytes(len(header).to_bytes(8, "little") + header + bytes(8))
    with pytest.raises(GoldenFormatError, match=r"ints.safetensors: tensor 'x': unsupported dtype 'I32'"):
        load_tensors(path)


def test_a_bfloat16_array_in_an_npz_is_refused_with_a_hint(tmp_path):
    path = write_npz(tmp_path / "bf.npz", {"x": np.ones((2, 3), BF16)})
    with pytest.raises(ValueError, match=r"tensor 'x' has dtype .*V2.*store bfloat16 in a \.safetensors file"):
        load_tensors(path)


def test_not_an_array_and_a_cotangent_in_another_dtype():
    with pytest.raises(TypeError, match=r"inputs\['x'\] is a list; expected a numpy array"):
        case_from_tensors("layer_norm", dict(layer_norm_tensors(), x=[[1.0, 2.0]]), LN_ATTRS)
    t = dict(layer_norm_tensors(), dy=layer_norm_tensors()["dy"].astype(np.float64))
    with pytest.raises(TypeError, match=r"inputs\['dy'\] is float64, but a cotangent is in the case dtype, that "
                                        r"of 'x': float32"):
        case_from_tensors("layer_norm", t, LN_ATTRS)
    with pytest.raises(ValueError, match=r"layer_norm needs the tensor 'x'"):
        case_from_tensors("layer_norm", {"weight": np.ones(24, np.float32)}, LN_ATTRS)


class _Boom:
    """Unpickling this would call :func:`_touch` and leave a file behind."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (_touch, (self.path,))


def _touch(path):
    open(path, "w").close()
    return path


def test_a_pickle_in_an_npz_is_refused_without_unpickling(tmp_path):
    marker = tmp_path / "unpickled"
    path = tmp_path / "evil.npz"
    np.savez(path, x=np.array([_Boom(marker)], dtype=object), allow_pickle=True)
    assert not marker.exists()
    with pytest.raises(ValueError, match=r"evil.npz: tensor 'x' is an object array, refused: refnorm never "
                                         r"unpickles"):
        load_tensors(path)
    assert not marker.exists()
    # a bare pickle renamed .npz is refused too
    path = tmp_path / "bare.npz"
    path.write_bytes(pickle.dumps(_Boom(marker)))
    with pytest.raises(ValueError, match=r"bare.npz: not an .npz archive refnorm can read"):
        load_tensors(path)
    assert not marker.exists()


def test_archives_that_are_not_named_tensors(tmp_path):
    np.save(tmp_path / "one.npy", np.ones(3))
    (tmp_path / "one.npy").rename(tmp_path / "one.npz")
    with pytest.raises(ValueError, match=r"one.npz: holds a single .npy array, not an .npz archive"):
        load_tensors(tmp_path / "one.npz")
    path = tmp_path / "twice.npz"
    with zipfile.ZipFile(path, "w") as z, pytest.warns(UserWarning, match="Duplicate name"):
        for _ in range(2):
            with z.open("x.npy", "w") as f:
                np.lib.format.write_array(f, np.ones(3))
    with pytest.raises(ValueError, match=r"twice.npz: tensor name 'x' occurs 2 times"):
        load_tensors(path)
    path = tmp_path / "notes.npz"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("README.txt", "hello")
    with pytest.raises(ValueError, match=r"notes.npz: archive member 'README.txt' is not an .npy array"):
        load_tensors(path)
    for name, data in [("empty.npz", b""), ("junk.npz", b"PK\x03\x04 not really a zip")]:
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ValueError, match=rf"{name}: not an .npz archive refnorm can read \((EOFError|BadZip)"):
            load_tensors(tmp_path / name)
    with pytest.raises(ValueError, match=r"x.pt: expected a .safetensors or .npz file, got suffix '.pt'"):
        load_tensors(tmp_path / "x.pt")
    with pytest.raises(FileNotFoundError):
        load_tensors(tmp_path / "missing.npz")


@pytest.mark.parametrize("name", ["", "a-b", "a/b", "x y", "é", None])
def test_bad_name(name):
    with pytest.raises(ValueError, match=r"name .* must be letters, digits and '_'"):
        case_from_tensors("layer_norm", layer_norm_tensors(), LN_ATTRS, name=name)


def test_shape_mismatch_is_refnorms_own_error():
    with pytest.raises(ValueError, match=r"normalized_shape \(23,\) must equal the trailing dimensions of x"):
        case_from_tensors("layer_norm", layer_norm_tensors(), {"normalized_shape": [23]})
    t = dict(layer_norm_tensors(), weight=np.ones(5, np.float32))
    with pytest.raises(ValueError, match=r"weight must have shape \(24,\)"):
        case_from_tensors("layer_norm", t, LN_ATTRS)


def test_missing_and_unknown_attrs():
    with pytest.raises(ValueError, match=r"layer_norm needs the attribute normalized_shape in attrs \(e\.g\. "
                                         r"\{\"normalized_shape\": \["):
        case_from_tensors("layer_norm", layer_norm_tensors())
    with pytest.raises(ValueError, match=r"group_norm needs the attribute num_groups"):
        case_from_tensors("group_norm", {"x": np.ones((2, 4, 3), np.float32)}, {"eps": 1e-5})
    with pytest.raises(ValueError, match=r"attrs\['epsilon'\]: layer_norm has no attribute 'epsilon'; its "
                                         r"attributes are normalized_shape, eps, offset"):
        case_from_tensors("layer_norm", layer_norm_tensors(), dict(LN_ATTRS, epsilon=1e-5))
    with pytest.raises(ValueError, match=r"attrs\['eps'\] = nan is not a JSON value"):
        case_from_tensors("layer_norm", layer_norm_tensors(), dict(LN_ATTRS, eps=float("nan")))
    with pytest.raises(TypeError, match=r"attrs must be a dict"):
        case_from_tensors("layer_norm", layer_norm_tensors(), [("normalized_shape", [24])])
    with pytest.raises(ValueError, match=r"attrs\['running_stats'\] = .*expected \{convention"):
        case_from_tensors("batch_norm", batch_norm_tensors(), dict(BN_ATTRS, running_stats={"keras": 0.99}))


def test_a_file_written_by_the_safetensors_package(tmp_path):
    """A trace saved from PyTorch with the ``safetensors`` package reads as it was (bfloat16 included)."""
    torch = pytest.importorskip("torch")
    st = pytest.importorskip("safetensors.torch")
    t = layer_norm_tensors()
    path = tmp_path / "trace.safetensors"
    st.save_file({k: torch.from_numpy(v).to(torch.bfloat16) for k, v in t.items()}, str(path))
    tensors = load_tensors(path)
    assert describe_tensors(tensors) == ("bias bfloat16 [24], dy bfloat16 [6, 24], weight bfloat16 [24], "
                                         "x bfloat16 [6, 24]")
    np.testing.assert_array_equal(tensors["x"], t["x"].astype(BF16))
    built = case_from_tensors("layer_norm", tensors, LN_ATTRS)
    assert list(built.inputs) == ["x", "weight", "bias", "dy"] and built.spec.dtype == "bfloat16"
