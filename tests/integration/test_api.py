"""The library as a user meets it: Codec.encode's inputs, --compress on a whole document, the
installable package, and bench scripts that run from any checkout."""
import ast
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from semcomp.codes import read_codes
from semcomp.data import split_document

ROOT = Path(__file__).resolve().parents[2]


def test_encode_takes_a_single_string_as_one_sentence(built):
    from semcomp import Codec

    codec = Codec.load(built[0])
    text = "The lobster is a large crustacean with a hard shell."
    one = codec.encode(text)
    assert one.shape == (1, codec.cfg["vqvae_num_codebooks"])  # not one code per character
    np.testing.assert_array_equal(one, codec.encode([text]))


def compress(root: Path, src: Path) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "pipeline.py", "--artifacts", str(root), "-q", "--compress", str(src)],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    return r


def test_compress_keeps_the_whole_document_in_order(built, tmp_path):
    from semcomp import Codec

    root, _ = built
    lines = ["Hi Sarah,", "Ok.", "The lobster is a large crustacean with a hard shell.", "Ok.", "Best,"]
    notes = tmp_path / "dups.txt"
    notes.write_text("\n".join(lines) + "\n")
    compress(root, notes)  # no -o: named after the input, not dups.txt.scz
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dups.scz", "dups.txt"]
    codes = read_codes(tmp_path / "dups.scz").codes
    assert len(codes) == 5  # was 1: short lines and the repeat were dropped
    codec = Codec.load(root)
    np.testing.assert_array_equal(codes, codec.encode(codec.embed(split_document(lines))))

    folder = tmp_path / "my_notes"
    folder.mkdir()
    (folder / "a.txt").write_text("Hi Sarah,\n")
    compress(root, folder)  # a folder: its name + .scz, beside it
    assert len(read_codes(tmp_path / "my_notes.scz").codes) == 1


def test_package_builds_with_only_semcomp(tmp_path):
    """`pip install -e .` failed: setuptools found bench/, artifacts/ and semcomp/ at the top."""
    pytest.importorskip("setuptools")
    src = tmp_path / "src"
    shutil.copytree(ROOT / "semcomp", src / "semcomp", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "requirements.txt"):
        shutil.copy(ROOT / name, src / name)
    for name in ("bench", "artifacts", "tests"):  # what sits beside the package in a checkout
        (src / name).mkdir()
        (src / name / "x.py").write_text("")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                        "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    wheel, = (tmp_path / "dist").glob("semcomp-*.whl")
    import zipfile

    from semcomp import __version__

    top = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert top == {"semcomp", f"semcomp-{__version__}.dist-info"}


def _absolute_paths(path: Path) -> list[str]:
    return [node.value for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and node.value.startswith(("/tmp/", "/work/", "/home/", "/root/", "/Users/"))]


@pytest.mark.parametrize("script", sorted(p.name for p in (ROOT / "bench").glob("*.py")))
def test_bench_defaults_are_relative_to_the_repository(script):
    assert _absolute_paths(ROOT / "bench" / script) == []


def test_readme_python_examples_run(built):
    """Every ```python block of the README runs as written, on a real (small) run's artifacts."""
    import re

    root, _ = built
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    assert blocks, "the README has no Python example"
    for code in blocks:
        env = {"texts": ["The river floods every spring.", "He was elected mayor in 1990."]}
        exec(compile(code.replace('"artifacts"', repr(str(root))), "README.md", "exec"), env)
        assert env["records"][0]["reconstruction"] and env["D"].shape == (2, 384)


def test_api_refuses_bad_arrays_in_one_line(built):
    """encode([1, 2]) raised AttributeError, decode of a (1, 3) array a torch error, float codes
    were truncated and NaN embeddings encoded, all silently or with a traceback."""
    from semcomp import Codec
    from semcomp.errors import UsageError

    root, _ = built
    codec = Codec.load(root)
    k = codec.model.num_codebooks
    good = codec.encode(["A sentence about rivers."])
    for bad, why in (([1, 2], "list of str"), (np.full((1, 384), np.nan, np.float32), "NaN")):
        with pytest.raises(UsageError, match=why):
            codec.encode(bad)
    for bad, why in ((np.zeros((1, k + 1), np.int64), "must be"), (good.astype(np.float64) + 0.5, "integers"),
                     (good + (1 << codec.model.bits_per_code), r"in \[0")):
        with pytest.raises(UsageError, match=why):
            codec.decode(bad)
    assert codec.decode(good).shape == (1, 384)
