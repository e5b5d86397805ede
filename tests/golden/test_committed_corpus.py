"""The committed corpus (spec/golden) is sound and is exactly what the code in
this repository generates: regenerated from the catalogue with 1 and with 2
Numba threads, every file is byte-identical to the committed one."""

from __future__ import annotations

import filecmp
import os
import subprocess
import sys
from pathlib import Path

import pytest

from refnorm.golden import load_cases, verify
from refnorm.golden.catalogue import catalogue
from refnorm.golden.corpus import default_root
from refnorm.golden.manifest import load_manifest

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "spec" / "golden"


def _files(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file())


def test_the_default_root_is_the_committed_corpus(monkeypatch):
    monkeypatch.delenv("REFNORM_GOLDEN_DIR", raising=False)
    assert Path(default_root()).resolve() == COMMITTED


def test_committed_corpus_verifies_bit_for_bit():
    """Hashes, headers, manifest, and every expected value / tolerance / scale
    recomputed from the stored inputs."""
    assert verify(COMMITTED) == []


def test_committed_corpus_holds_every_catalogue_case():
    manifest = load_manifest(COMMITTED)
    ids = [c["id"] for c in manifest["cases"]]
    assert len(set(ids)) == len(ids)
    assert set(ids) == {s.id for s in catalogue(include_large=False)}
    assert manifest["accuracy"]["claim"], "the manifest must state the accuracy of its expected values"
    assert sum(1 for _ in load_cases(root=COMMITTED)) == len(ids)


def test_stored_nans_are_canonical():
    """Every NaN of an expected or scale tensor is the canonical quiet NaN (its
    sign and payload carry no meaning and vary with instruction selection)."""
    import numpy as np

    from refnorm.golden.safetensors import load_file

    manifest = load_manifest(COMMITTED)
    seen = 0
    for c in manifest["cases"]:
        tensors, _ = load_file(COMMITTED / c["file"])
        for name, meta in c["tensors"].items():
            if meta["role"] in ("expected", "scale"):
                bits = tensors[name].view(np.uint64)[np.isnan(tensors[name])]
                seen += bits.size
                assert np.all(bits == np.uint64(0x7FF8000000000000)), f"{c['file']}: {name} holds a non-canonical NaN"
    assert seen > 0  # the corpus does carry NaN expectations (E2, E23)


@pytest.mark.parametrize("threads", [1, 2])
def test_regeneration_is_byte_identical(tmp_path, threads):
    out = tmp_path / "golden"
    env = dict(os.environ, NUMBA_NUM_THREADS=str(threads))
    env.pop("REFNORM_GOLDEN_DIR", None)
    r = subprocess.run([sys.executable, "-m", "refnorm.cli", "generate", "--out", str(out), "--quiet"],
                       env=env, capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert r.returncode == 0, r.stderr
    assert _files(out) == _files(COMMITTED)
    _, mismatch, errors = filecmp.cmpfiles(COMMITTED, out, _files(COMMITTED), shallow=False)
    assert not mismatch and not errors, f"regenerated files differ from the committed corpus: {mismatch[:10]}"
