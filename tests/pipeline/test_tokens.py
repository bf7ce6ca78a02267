"""read_tokens: memory-mapped, little-endian, concatenated in list order."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from pipeline import read_tokens
from pipeline.tokens import read_doc_ends


def test_single_file_is_a_memmap_and_many_concatenate(tmp_path):
    a, b = tmp_path / "a.ds", tmp_path / "b.ds"
    np.array([1, 2, 3], dtype="<u2").tofile(a)
    np.array([65535, 0], dtype="<u2").tofile(b)
    one = read_tokens([a], "uint16")
    assert isinstance(one, np.memmap) and one.tolist() == [1, 2, 3]
    assert read_tokens([a, b], "uint16").tolist() == [1, 2, 3, 65535, 0]
    assert read_tokens([], "uint32").size == 0
    np.array([7, 70000], dtype="<u4").tofile(tmp_path / "c.ds")
    assert read_tokens([tmp_path / "c.ds"], np.uint32).tolist() == [7, 70000]


def test_doc_ends_index(tmp_path):
    np.array([2, 5], dtype="<u8").tofile(tmp_path / "x.ds.index")
    assert read_doc_ends(tmp_path / "x.ds").tolist() == [2, 5]
    assert read_doc_ends(tmp_path / "missing.ds").size == 0


def test_package_import_stays_light():
    code = "import sys, pipeline; print('datatrove' in sys.modules, 'tokenizers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
