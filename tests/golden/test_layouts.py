"""Memory layouts of case tensors (refnorm.golden.layouts) and the manifest's optional layout/checks fields."""

from __future__ import annotations

import copy
import json

import ml_dtypes
import numpy as np
import pytest

from refnorm.golden.layouts import check_layout, describe, strided_view
from refnorm.golden.manifest import ManifestError, validate_manifest

LAYOUTS = [{}, {"order": [2, 1, 0]}, {"order": [0, 2, 1]}, {"step": [1, 3, 2]}, {"flip": [0, 2]},
           {"offset": 5}, {"order": [1, 2, 0], "step": [2, 1, 1], "flip": [1], "offset": 3}]


@pytest.mark.parametrize("layout", LAYOUTS, ids=describe)
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16, ml_dtypes.bfloat16])
def test_a_view_holds_the_values_bit_for_bit(layout, dtype):
    a = (np.arange(60, dtype=np.float64).reshape(3, 4, 5) * 0.37 - 7).astype(dtype)
    v = strided_view(a, layout)
    assert v.shape == a.shape and v.dtype == a.dtype
    assert np.array_equal(v.astype(np.float64), a.astype(np.float64))
    assert not np.shares_memory(v, a)
    if layout.get("order") not in (None, [0, 1, 2]) or any(s != 1 for s in layout.get("step", [1])) \
            or layout.get("flip"):
        assert not v.flags.c_contiguous
    if layout:
        root = v
        while root.base is not None:
            root = root.base
        # everything of the buffer outside the view is NaN: a read outside it shows
        assert np.isnan(root.astype(np.float64)).sum() == root.size - a.size


def test_the_named_layouts():
    assert describe({}) == "contiguous"
    assert describe({"order": [1, 0]}) == "fortran"
    assert describe({"order": [0, 2, 3, 1]}) == "order[0,2,3,1]"
    assert describe({"step": [1, 2], "offset": 3}) == "step[1,2]+offset 3"


@pytest.mark.parametrize("layout, message", [
    ({"order": [0, 0]}, "not a permutation"), ({"step": [1]}, "step >= 1 for each"), ({"step": [0, 1]}, "step"),
    ({"flip": [2]}, "distinct axes"), ({"offset": -1}, "offset"), ({"stride": [1, 1]}, "unknown keys"),
    ([], "must be an object")])
def test_bad_layouts_are_refused(layout, message):
    with pytest.raises(ValueError, match=message):
        check_layout(layout, 2)


def _manifest():
    return {"format": "refnorm-golden", "format_version": 1, "refnorm_version": "0", "generator": "g",
            "accuracy": {}, "cases": [{
                "id": "layer_norm/a__float32", "op": "layer_norm", "name": "a", "tier": "statistical",
                "dtype": "float32", "attrs": {}, "shapes": {"x": [2, 3]}, "recipe": {}, "seed": 0,
                "expect": {"kind": "value"}, "description": "", "file": "layer_norm/a__float32.safetensors",
                "sha256": "0" * 64, "tolerances": {},
                "tensors": {"x": {"dtype": "F32", "shape": [2, 3], "role": "input"}}}]}


def test_the_manifest_accepts_layouts_and_checks():
    m = _manifest()
    m["cases"][0]["layout"] = {"x": {"order": [1, 0], "offset": 2}}
    m["cases"][0]["checks"] = {"inputs_unchanged": True, "repeat": 3, "batch_invariance": False}
    validate_manifest(json.loads(json.dumps(m)))


@pytest.mark.parametrize("field, value, message", [
    ("layout", {"y": {}}, "not an input tensor"), ("layout", {"x": {"order": [0]}}, "permutation"),
    ("layout", [], "expected a object"), ("checks", {"fast": True}, "unknown property"),
    ("checks", {"repeat": 1}, "integer >= 2"), ("checks", {"inputs_unchanged": 1}, "true or false")])
def test_the_manifest_refuses_bad_layouts_and_checks(field, value, message):
    m = copy.deepcopy(_manifest())
    m["cases"][0][field] = value
    with pytest.raises(ManifestError, match=message):
        validate_manifest(m)
