"""Our safetensors reader/writer: round trips, byte determinism, every refusal
path, and a cross-check against the reference ``safetensors`` package."""

from __future__ import annotations

import json
import struct

import ml_dtypes
import numpy as np
import pytest

from refnorm.golden.safetensors import (
    DTYPES,
    GoldenFormatError,
    dumps,
    load_file,
    loads,
    read_header,
    save_file,
)

BF16 = np.dtype(ml_dtypes.bfloat16)


def sample_tensors():
    rng = np.random.default_rng(1)
    specials = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-310, -2.5, 65504.0])
    return {
        "x": rng.standard_normal((3, 5)).astype(np.float16),
        "weight": rng.standard_normal(5).astype(np.float32),
        "y": rng.standard_normal((3, 5)),
        "b16": np.concatenate([rng.standard_normal(5), specials]).astype(BF16),
        "s": np.array(2.75),  # 0-d scalar
        "empty": np.zeros((0, 4), np.float32),
        "empty0d": np.zeros((2, 0, 3), np.float64),
        "spec64": specials,
        "spec16": specials.astype(np.float16),
    }


def same_bits(a, b):
    assert a.dtype == b.dtype and a.shape == b.shape
    u = {8: np.uint64, 4: np.uint32, 2: np.uint16}[a.dtype.itemsize]
    assert np.array_equal(np.ascontiguousarray(a).view(u), np.ascontiguousarray(b).view(u))


def frame(header: dict | bytes, data: bytes = b"", n: int | None = None) -> bytes:
    """Hand-build a file from a header (dict or raw bytes) and a data buffer."""
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(text) if n is None else n) + text + data


# ----------------------------------------------------------------------------- round trips


def test_round_trip_every_dtype_bit_exact(tmp_path):
    t = sample_tensors()
    path = tmp_path / "a.safetensors"
    save_file(t, path, {"case": "demo", "k": "v"})
    back, meta = load_file(path)
    assert meta == {"case": "demo", "k": "v"}
    assert sorted(back) == sorted(t)
    for name in t:
        same_bits(np.asarray(t[name]), back[name])
    assert back["b16"].dtype == BF16 and back["x"].dtype == np.float16 and back["s"].shape == ()
    assert all(a.flags.writeable and a.flags.aligned for a in back.values())


def test_all_four_dtypes_and_only_them():
    assert {k: str(v) for k, v in DTYPES.items()} == {"F64": "float64", "F32": "float32", "F16": "float16",
                                                      "BF16": "bfloat16"}


def test_non_contiguous_and_big_endian_inputs_are_stored_little_endian_c_order():
    a = np.arange(12, dtype=np.float64).reshape(3, 4)
    data = dumps({"t": a.T, "be": a.astype(">f4")})
    back, _ = loads(data)
    same_bits(back["t"], np.ascontiguousarray(a.T))
    assert back["be"].dtype == np.float32 and np.array_equal(back["be"], a.astype(np.float32))
    header, _ = read_header(data)
    b, e = header["be"]["data_offsets"]
    start = 8 + int.from_bytes(data[:8], "little")
    assert data[start + b:start + b + 4] == struct.pack("<f", 0.0)
    assert data[start + b + 4:start + b + 8] == struct.pack("<f", 1.0)


def test_bfloat16_bits_are_the_top_half_of_binary32():
    v = np.array([1.0, -2.5, 3.140625], dtype=BF16)
    data = dumps({"v": v})
    raw = data[8 + int.from_bytes(data[:8], "little"):]
    for i, f in enumerate([1.0, -2.5, 3.140625]):
        assert raw[2 * i:2 * i + 2] == struct.pack("<f", f)[2:]


# ----------------------------------------------------------------------------- determinism


def test_bytes_do_not_depend_on_insertion_order_and_header_is_canonical():
    t = sample_tensors()
    a = dumps(t, {"b": "2", "a": "1"})
    b = dumps(dict(reversed(list(t.items()))), {"a": "1", "b": "2"})
    assert a == b
    n = int.from_bytes(a[:8], "little")
    assert (8 + n) % 8 == 0
    text = a[8:8 + n].decode()
    stripped = text.rstrip(" ")
    assert set(text[len(stripped):]) <= {" "}
    obj = json.loads(stripped)
    assert stripped == json.dumps(obj, sort_keys=True, separators=(",", ":"))


def test_every_tensor_is_naturally_aligned_in_the_file():
    data = dumps(sample_tensors())
    header, _ = read_header(data)
    start = 8 + int.from_bytes(data[:8], "little")
    for name, e in header.items():
        assert (start + e["data_offsets"][0]) % DTYPES[e["dtype"]].itemsize == 0, name


def test_empty_file_with_no_tensors():
    data = dumps({})
    assert loads(data) == ({}, {})


# ----------------------------------------------------------------------------- writer refusals


@pytest.mark.parametrize("bad", [np.arange(3), np.zeros(2, np.complex128), np.zeros(2, bool), [1.0, 2.0]])
def test_writer_refuses_other_dtypes(bad):
    with pytest.raises(TypeError):
        dumps({"x": bad})


@pytest.mark.parametrize("name", ["", "1x", "a b", "__metadata__x/", "é", "__metadata__"])
def test_writer_refuses_bad_names(name):
    with pytest.raises(ValueError, match="invalid tensor name"):
        dumps({name: np.zeros(1)})


def test_writer_refuses_non_string_metadata():
    with pytest.raises(TypeError, match="metadata"):
        dumps({"x": np.zeros(1)}, {"n": 1})


def test_save_file_leaves_no_temporary_file(tmp_path):
    save_file({"x": np.zeros(2)}, tmp_path / "f.safetensors")
    assert [p.name for p in tmp_path.iterdir()] == ["f.safetensors"]


# ----------------------------------------------------------------------------- reader refusals


GOOD_ENTRY = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
DATA8 = bytes(8)


@pytest.mark.parametrize("data, match", [
    (b"", "shorter than the 8-byte header length"),
    (b"\x05\x00\x00", "shorter than the 8-byte header length"),
    (frame({"x": GOOD_ENTRY}, DATA8, n=10_000), "runs past the end of the file"),
    (frame({"x": GOOD_ENTRY}, DATA8, n=2**63), "exceeds the limit"),
    (frame(b"{}", b"", n=1), "too small"),
    (frame(b'{"x": \xff}', DATA8), "not valid UTF-8"),
    (frame(b'{"x": ', DATA8), "not valid JSON"),
    (frame(b'[1, 2]'), "not an object"),
    (frame(b'{"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, '
           b'"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}', DATA8), "duplicate key"),
    (frame(b'{"x": {"dtype": "F32", "shape": [NaN], "data_offsets": [0, 8]}}', DATA8), "not valid JSON"),
    (frame({"x": {"dtype": "I32", "shape": [2], "data_offsets": [0, 8]}}, DATA8), "unsupported dtype 'I32'"),
    (frame({"x": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, DATA8), "shape"),
    (frame({"x": {"dtype": "F32", "shape": [2.0], "data_offsets": [0, 8]}}, DATA8), "shape"),
    (frame({"x": {"dtype": "F32", "shape": [True, 2], "data_offsets": [0, 8]}}, DATA8), "shape"),
    (frame({"x": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}}, DATA8), "data_offsets"),
    (frame({"x": {"dtype": "F32", "shape": [2], "data_offsets": [0]}}, DATA8), "data_offsets"),
    (frame({"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 16]}}, DATA8), "run past the end"),
    (frame({"x": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, DATA8), "needs 12"),
    (frame({"x": {"dtype": "F32", "shape": [2]}}, DATA8), "expected \\['data_offsets'"),
    (frame({"x": dict(GOOD_ENTRY, extra=1)}, DATA8), "entry has keys"),
    (frame({"x": [1]}, DATA8), "not an object"),
    (frame({"a b": GOOD_ENTRY}, DATA8), "invalid tensor name"),
    (frame({"x": GOOD_ENTRY, "y": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, bytes(12)),
     "overlap"),
    (frame({"x": GOOD_ENTRY, "y": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, DATA8), "overlap"),
    (frame({"x": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, bytes(12)), "gap of 4"),
    (frame({"x": GOOD_ENTRY}, bytes(12)), "4 trailing bytes"),
    (frame({"x": GOOD_ENTRY, "__metadata__": {"a": 1}}, DATA8), "__metadata__"),
    (frame({"x": GOOD_ENTRY, "__metadata__": [1]}, DATA8), "__metadata__"),
])
def test_reader_refuses(tmp_path, data, match):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(data)
    with pytest.raises(GoldenFormatError, match=match) as info:
        load_file(path)
    assert str(path) in str(info.value)  # the error names the file
    assert isinstance(info.value, ValueError)
    with pytest.raises(GoldenFormatError, match=match):
        read_header(path)


def test_truncated_real_file_is_refused(tmp_path):
    data = dumps(sample_tensors())
    for cut in (0, 4, 8, 20, len(data) // 2, len(data) - 1):
        with pytest.raises(GoldenFormatError):
            loads(data[:cut], source="cut")


def test_hand_built_file_with_zero_size_tensors_and_spaces_is_read():
    header = {"e": {"dtype": "F16", "shape": [0], "data_offsets": [4, 4]},
              "x": {"dtype": "BF16", "shape": [2], "data_offsets": [0, 4]}}
    text = json.dumps(header).encode() + b"   "
    t, meta = loads(frame(text, b"\x80\x3f\x00\xc0"), source="hand")
    assert meta == {}
    assert t["x"].tolist() == [1.0, -2.0] and t["e"].shape == (0,)


# ----------------------------------------------------------------------------- cross-check


def test_cross_check_our_files_load_in_the_reference_implementation():
    st = pytest.importorskip("safetensors")
    t = sample_tensors()
    data = dumps(t, {"case": "demo"})
    theirs = dict(st.deserialize(data))
    assert sorted(theirs) == sorted(t)
    for name, a in t.items():
        a = np.asarray(a)
        info = theirs[name]
        assert info["dtype"] == {"float64": "F64", "float32": "F32", "float16": "F16", "bfloat16": "BF16"}[str(a.dtype)]
        assert list(info["shape"]) == list(a.shape)
        raw = bytes(info["data"])
        same_bits(np.frombuffer(raw, dtype=a.dtype).reshape(a.shape), a)


def test_cross_check_reference_files_load_here():
    pytest.importorskip("safetensors")
    torch = pytest.importorskip("torch")
    from safetensors.torch import save

    src = {"b": torch.tensor([1.5, -2.0, 3.0], dtype=torch.bfloat16),
           "h": torch.tensor([[0.5, -1.0]], dtype=torch.float16),
           "f": torch.arange(6, dtype=torch.float32).reshape(2, 3),
           "d": torch.tensor(2.25, dtype=torch.float64),
           "z": torch.zeros(0, 3, dtype=torch.float32)}
    data = save(src, metadata={"k": "v"})
    ours, meta = loads(data, source="reference")
    assert meta == {"k": "v"}
    for name, t in src.items():
        want = t.float().numpy().astype(ours[name].dtype) if t.dtype == torch.bfloat16 else t.numpy()
        same_bits(ours[name], np.asarray(want))
    assert ours["b"].dtype == BF16
