"""The manifest: deterministic text and every refusal path of its validation."""

from __future__ import annotations

import copy
import json
import os

import pytest

from refnorm.golden.manifest import (
    FORMAT_VERSION,
    ManifestError,
    case_entry,
    dumps_manifest,
    load_manifest,
    make_manifest,
    resolve_case_file,
    validate_manifest,
    write_manifest,
)
from refnorm.golden.safetensors import GoldenFormatError

TOL = {"atol": 0.0, "rtol": 1e-6, "ulp": 2, "scale": "expected", "derivation": "c*u*K"}


def entry(case_id="layer_norm/basic__float32", file=None, **over):
    op, rest = case_id.split("/")
    name, dtype = rest.split("__")
    spec = {"id": case_id, "op": op, "name": name, "tier": "statistical", "dtype": dtype,
            "attrs": {"normalized_shape": [5], "eps": 1e-5}, "shapes": {"x": [3, 5]},
            "recipe": {"x": "normal"}, "seed": 3, "expect": {"kind": "value"},
            "description": "random rows", "large": False}
    e = case_entry(spec, file=file or f"{op}/{name}__{dtype}.safetensors", sha256="0" * 64,
                   tensors={"x": {"dtype": "F32", "shape": [3, 5], "role": "input"},
                            "y": {"dtype": "F64", "shape": [3, 5], "role": "expected"},
                            "y.scale": {"dtype": "F64", "shape": [3, 5], "role": "scale"}},
                   tolerances={"y": dict(TOL)})
    e.update(over)
    return e


def manifest(*entries):
    return make_manifest(list(entries) or [entry()])


def test_good_manifest_validates_and_text_is_deterministic(tmp_path):
    m = manifest(entry("rms_norm/a__float16"), entry())
    validate_manifest(m)
    assert [c["id"] for c in m["cases"]] == ["layer_norm/basic__float32", "rms_norm/a__float16"]
    text = dumps_manifest(m)
    assert text.endswith("}\n") and text == json.dumps(json.loads(text), sort_keys=True, indent=1) + "\n"
    assert m["format"] == "refnorm-golden" and m["format_version"] == FORMAT_VERSION
    assert "claim" in m["accuracy"] and m["refnorm_version"]
    write_manifest(tmp_path / "manifest.json", m)
    assert (tmp_path / "manifest.json").read_text() == text
    assert load_manifest(tmp_path) == m
    assert load_manifest(tmp_path / "manifest.json") == m


def mutate(fn):
    m = manifest()
    fn(m)
    return m


def drop(key):
    return lambda m: m.pop(key)


def drop_case(key):
    return lambda m: m["cases"][0].pop(key)


def set_case(key, value):
    return lambda m: m["cases"][0].__setitem__(key, value)


def set_tol(key, value):
    return lambda m: m["cases"][0]["tolerances"]["y"].__setitem__(key, value)


def set_tensor(name, key, value):
    return lambda m: m["cases"][0]["tensors"][name].__setitem__(key, value)


BAD = [
    ("top-level array", lambda m: None, "not an object"),
    ("wrong format", lambda m: m.__setitem__("format", "other"), "format is 'other'"),
    ("future version", lambda m: m.__setitem__("format_version", 2), "unknown format_version 2"),
    ("string version", lambda m: m.__setitem__("format_version", "1"), "unknown format_version"),
    ("no version", drop("format_version"), "missing field 'format_version'"),
    ("no cases", drop("cases"), "missing field 'cases'"),
    ("no accuracy", drop("accuracy"), "missing field 'accuracy'"),
    ("cases not a list", lambda m: m.__setitem__("cases", {}), "field 'cases'"),
    ("case not object", lambda m: m["cases"].__setitem__(0, "x"), r"cases\[0\]"),
    ("no sha", drop_case("sha256"), "missing field 'sha256'"),
    ("no id", drop_case("id"), r"cases\[0\]: missing field 'id'"),
    ("seed is a string", set_case("seed", "3"), "field 'seed'"),
    ("seed is a bool", set_case("seed", True), "field 'seed'"),
    ("attrs not an object", set_case("attrs", []), "field 'attrs'"),
    ("bad tier", set_case("tier", "fuzzy"), "tier 'fuzzy'"),
    ("bad dtype", set_case("dtype", "int8"), "dtype 'int8'"),
    ("bad expect kind", set_case("expect", {"kind": "maybe"}), "expect.kind"),
    ("id not under op", set_case("op", "rms_norm"), "does not start with its op"),
    ("short sha", set_case("sha256", "abc"), "64 lowercase hex"),
    ("upper sha", set_case("sha256", "A" * 64), "64 lowercase hex"),
    ("absolute path", set_case("file", "/etc/passwd"), "is absolute"),
    ("windows absolute", set_case("file", "C:/x.safetensors"), "is absolute"),
    ("dotdot", set_case("file", "../outside.safetensors"), r"no '\.\.'"),
    ("inner dotdot", set_case("file", "layer_norm/../../x.safetensors"), r"no '\.\.'"),
    ("backslash", set_case("file", "layer_norm\\x.safetensors"), "backslashes"),
    ("empty component", set_case("file", "layer_norm//x.safetensors"), "empty components"),
    ("empty path", set_case("file", ""), "is empty"),
    ("bad tensor dtype", set_tensor("x", "dtype", "I8"), "dtype 'I8'"),
    ("bad tensor shape", set_tensor("x", "shape", [3, -1]), "shape"),
    ("bad role", set_tensor("x", "role", "output"), "role 'output'"),
    ("no role", lambda m: m["cases"][0]["tensors"]["x"].pop("role"), "lacks 'role'"),
    ("bad tensor name", lambda m: m["cases"][0]["tensors"].__setitem__("a b", {}), "invalid tensor name"),
    ("orphan scale", lambda m: m["cases"][0]["tensors"].__setitem__(
        "z.scale", {"dtype": "F64", "shape": [1], "role": "scale"}), "'z.scale' is not"),
    ("tolerance for missing output", lambda m: m["cases"][0]["tolerances"].__setitem__("dx", dict(TOL)),
     "tolerances given for"),
    ("missing tolerance", lambda m: m["cases"][0]["tolerances"].clear(), "tolerances given for"),
    ("negative atol", set_tol("atol", -1.0), "must be finite and >= 0"),
    ("string rtol", set_tol("rtol", "1e-6"), "rtol"),
    ("float ulp", set_tol("ulp", 1.5), "ulp"),
    ("bad scale kind", set_tol("scale", "max"), "scale = 'max'"),
    ("no derivation", lambda m: m["cases"][0]["tolerances"]["y"].pop("derivation"), "lacks 'derivation'"),
    ("tensor scale missing", lambda m: m["cases"][0]["tensors"].pop("y.scale") and
     m["cases"][0]["tolerances"]["y"].__setitem__("scale", "tensor"), "no 'y.scale'"),
    ("error case with expected", set_case("expect", {"kind": "error", "type": "ValueError", "match": "x"}),
     "error case holds expected"),
    ("duplicate ids", lambda m: m["cases"].append(copy.deepcopy(m["cases"][0])), "duplicate case id"),
    ("shared file", lambda m: m["cases"].append(entry("layer_norm/other__float32",
                                                      file=m["cases"][0]["file"])), "share the file"),
]


@pytest.mark.parametrize("label, fn, match", BAD, ids=[b[0] for b in BAD])
def test_validation_refuses(tmp_path, label, fn, match):
    m = manifest()
    if label == "top-level array":
        m = [m]
    else:
        fn(m)
    with pytest.raises(ManifestError, match=match):
        validate_manifest(m)
    # the same through the file, with the manifest named in the message
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(m))
    with pytest.raises(ManifestError, match=match) as info:
        load_manifest(tmp_path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, GoldenFormatError) and isinstance(info.value, ValueError)


@pytest.mark.parametrize("text, match", [
    ("{", "not valid JSON"),
    ("", "not valid JSON"),
    ('{"format": NaN}', "not valid JSON"),
    ('{"format": "a", "format": "b"}', "duplicate key"),
    (b"\xff\xfe", "not valid JSON"),
])
def test_malformed_json_is_refused(tmp_path, text, match):
    p = tmp_path / "manifest.json"
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ManifestError, match=match):
        load_manifest(tmp_path)


def test_missing_manifest_says_how_to_make_one(tmp_path):
    with pytest.raises(ManifestError, match="refnorm generate"):
        load_manifest(tmp_path)


def test_write_manifest_refuses_invalid(tmp_path):
    with pytest.raises(ManifestError):
        write_manifest(tmp_path / "manifest.json", mutate(drop("cases")))
    assert not (tmp_path / "manifest.json").exists()


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symlinks")
def test_symlink_escaping_the_corpus_is_refused(tmp_path):
    corpus, outside = tmp_path / "corpus", tmp_path / "outside"
    (corpus / "layer_norm").mkdir(parents=True)
    outside.mkdir()
    (outside / "basic__float32.safetensors").write_bytes(b"")
    # a symlinked file
    (corpus / "layer_norm" / "basic__float32.safetensors").symlink_to(outside / "basic__float32.safetensors")
    write_manifest(corpus / "manifest.json", manifest())
    with pytest.raises(ManifestError, match="outside the corpus directory"):
        load_manifest(corpus)
    # a symlinked directory
    (corpus / "layer_norm" / "basic__float32.safetensors").unlink()
    (corpus / "layer_norm").rmdir()
    (corpus / "layer_norm").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ManifestError, match="outside the corpus directory"):
        load_manifest(corpus)


def test_symlink_inside_the_corpus_and_symlinked_root_are_fine(tmp_path):
    corpus = tmp_path / "corpus"
    (corpus / "store").mkdir(parents=True)
    (corpus / "store" / "f.safetensors").write_bytes(b"")
    (corpus / "layer_norm").symlink_to(corpus / "store", target_is_directory=True)
    assert resolve_case_file(corpus, "layer_norm/f.safetensors") == corpus / "layer_norm" / "f.safetensors"
    link = tmp_path / "link"
    link.symlink_to(corpus, target_is_directory=True)
    assert resolve_case_file(link, "store/f.safetensors") == link / "store" / "f.safetensors"
