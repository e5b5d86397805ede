"""examples/c: a C kernel author's LayerNorm/RMSNorm (norms.c) checked against the committed
corpus by a C driver that reads the fixtures with a header-only C99 reader
(refnorm_golden.h) -- no Python, no refnorm.  Built here with the system C compiler and
the example's warning flags, in a temporary directory."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "c"
CORPUS = ROOT / "spec" / "golden"
CFLAGS = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O2"]
OPS = ("layer_norm", "rms_norm")
DTYPES = ("float64", "float32", "float16", "bfloat16")
ROW = re.compile(r"^(layer_norm|rms_norm)\s+(float64|float32|float16|bfloat16)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\S+)",
                 re.M)
CORRUPTED = "layer_norm/d17_affine__float32.safetensors"


def _c_compiler() -> str | None:
    for name in ("cc", "gcc", "clang"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture(scope="module")
def driver(tmp_path_factory) -> Path:
    cc = _c_compiler()
    if cc is None:
        pytest.skip("no C compiler (cc, gcc or clang) on PATH")
    out = tmp_path_factory.mktemp("c_example") / "driver"
    cmd = [cc, *CFLAGS, "-o", str(out), "driver.c", "norms.c", "-lm"]
    r = subprocess.run(cmd, cwd=EXAMPLE, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"{' '.join(cmd)} failed:\n{r.stdout}{r.stderr}"
    assert r.stderr.strip() == "", f"compiler output (warnings?):\n{r.stderr}"
    return out


def _table(stdout: str) -> dict[tuple[str, str], dict]:
    return {(m[1], m[2]): {"cases": int(m[3]), "passed": int(m[4]), "failed": int(m[5]), "na": int(m[6]),
                           "worst": float(m[7])}
            for m in ROW.finditer(stdout)}


def test_c_driver_passes_the_committed_corpus(driver):
    r = subprocess.run([str(driver), str(CORPUS)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr
    assert "RESULT: PASS" in r.stdout
    table = _table(r.stdout)
    for op in OPS:
        for dt in DTYPES:
            row = table.get((op, dt))
            assert row is not None, f"no table row for {op} x {dt}:\n{r.stdout}"
            assert row["passed"] > 0 and row["failed"] == 0, (op, dt, row)
            assert row["worst"] <= 1.0, (op, dt, row)
    m = re.search(r"refused by the C argument checks: (\d+) of (\d+)", r.stdout)
    assert m and int(m[2]) > 0 and m[1] == m[2], r.stdout


@pytest.mark.parametrize("damage", ["flip_a_byte", "truncate"])
def test_c_driver_refuses_a_corrupted_fixture(driver, tmp_path, damage):
    corpus = tmp_path / "golden"
    shutil.copytree(CORPUS, corpus)
    victim = corpus / CORRUPTED
    data = bytearray(victim.read_bytes())
    if damage == "flip_a_byte":
        data[-5] ^= 0x10  # inside the last tensor's data: the header still parses
    else:
        data = data[: len(data) // 2]
    victim.write_bytes(bytes(data))
    r = subprocess.run([str(driver), str(corpus)], capture_output=True, text=True, timeout=120)
    out = r.stdout + r.stderr
    assert r.returncode != 0, out[-3000:]
    refusal = [line for line in out.splitlines() if "REFUSED" in line]
    assert len(refusal) == 1, out[-3000:]
    assert str(victim) in refusal[0] and "SHA-256 mismatch" in refusal[0], refusal[0]
    if damage == "truncate":
        assert "file truncated?" in refusal[0], refusal[0]
    # only that case fails: everything else still passes
    table = _table(r.stdout)
    assert table[("layer_norm", "float32")]["failed"] == 1
    assert sum(row["failed"] for row in table.values()) == 1


def test_cuda_variant_compiles(tmp_path):
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc not on PATH: the CUDA variant is not compiled")
    cmd = [nvcc, "-std=c++17", "-O2", "-Xcompiler", "-Wall,-Wextra,-Werror", "-c", "norms_cuda.cu",
           "-o", str(tmp_path / "norms_cuda.o")]
    r = subprocess.run(cmd, cwd=EXAMPLE, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"{' '.join(cmd)} failed:\n{r.stdout}{r.stderr}"
    assert (tmp_path / "norms_cuda.o").stat().st_size > 0
