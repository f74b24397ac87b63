"""Runs at once on one artifacts folder: they either work as they would alone or say the folder is busy."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from filelock import FileLock

from conftest import RAW

from semcomp.artifacts import ArtifactError
from semcomp.codes import read_codes

ROOT = Path(__file__).resolve().parents[2]


def _texts(tmp_path: Path) -> list[Path]:
    """Two different documents of WikiText paragraphs none of the run has embedded."""
    lines = [x for x in (RAW / "wiki.test.raw").read_text(encoding="utf-8").splitlines() if len(x) > 200]
    out = []
    for i, part in enumerate((lines[:150], lines[150:300])):
        out.append(tmp_path / f"doc{i}.txt")
        out[-1].write_text("\n".join(part), encoding="utf-8")
    return out


def test_two_compress_runs_at_once_give_the_codes_each_gives_alone(built, tmp_path):
    """Two real `pipeline.py --compress` processes on one artifacts folder, started together: each
    codes file equals the one a run alone on a fresh copy of the folder writes. Before the cache's
    lock both named their chunks from the count they read at start, and one file differed from its
    solo run in most rows."""
    root, _ = built
    shared, alone = tmp_path / "shared", tmp_path / "alone"
    shutil.copytree(root, shared)
    docs = _texts(tmp_path)
    env = {**os.environ, "TQDM_DISABLE": "1"}
    procs = [subprocess.Popen([sys.executable, "pipeline.py", "-q", "--artifacts", str(shared), "--compress",
                               str(d), "-o", str(tmp_path / f"together{i}.scz")], cwd=ROOT, env=env,
                              stderr=subprocess.PIPE, text=True) for i, d in enumerate(docs)]
    for p in procs:
        assert p.wait(600) == 0, p.stderr.read()[-2000:]

    from semcomp import Codec

    for i, d in enumerate(docs):  # each alone, on its own fresh copy
        shutil.rmtree(alone, ignore_errors=True)
        shutil.copytree(root, alone)
        Codec.load(alone).compress_file(d, tmp_path / f"alone{i}.scz")
        together = read_codes(tmp_path / f"together{i}.scz").codes
        np.testing.assert_array_equal(together, read_codes(tmp_path / f"alone{i}.scz").codes)
    assert len(together) > 100


def test_a_second_build_on_a_busy_folder_is_one_line(tmp_path):
    """While a build holds the folder, another says so at once instead of training over it (two
    `--input` runs at once ended in an IndexError)."""
    from conftest import small_config

    from semcomp.build import build

    cfg = small_config(tmp_path / "art")
    (tmp_path / "art").mkdir()
    with FileLock(tmp_path / "art" / ".lock"):
        with pytest.raises(ArtifactError, match="is busy: another `pipeline.py` is building it"):
            build(cfg)
    assert sorted(p.name for p in (tmp_path / "art").iterdir()) == [".lock"]  # nothing else written
