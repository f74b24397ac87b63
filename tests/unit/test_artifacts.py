import os

import pytest

from semcomp.artifacts import atomic_write, staged_run


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_atomic_write_keeps_old_file_on_crash_or_ctrl_c(tmp_path, exc):
    path = tmp_path / "x.bin"
    path.write_bytes(b"old")
    with pytest.raises(exc):
        with atomic_write(path) as f:
            f.write(b"half of the new")
            raise exc
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["x.bin"]  # no temp file left


def test_staged_run_replaces_whole_or_nothing(tmp_path):
    (tmp_path / "a.txt").write_text("run1")
    (tmp_path / "manifest.json").write_text("{}")
    with pytest.raises(KeyboardInterrupt):
        with staged_run(tmp_path) as stage:
            (stage / "a.txt").write_text("run2")
            raise KeyboardInterrupt
    assert (tmp_path / "a.txt").read_text() == "run1"
    assert sorted(os.listdir(tmp_path)) == ["a.txt", "manifest.json"]
    with staged_run(tmp_path) as stage:
        (stage / "a.txt").write_text("run2")
        (stage / "manifest.json").write_text('{"run": 2}')
    assert (tmp_path / "a.txt").read_text() == "run2"
    assert sorted(os.listdir(tmp_path)) == ["a.txt", "manifest.json"]


def test_staged_run_clears_dead_runs_leftovers(tmp_path):
    dead = tmp_path / ".staging-999999999-abc"
    dead.mkdir()
    (dead / "half.bin").write_bytes(b"x")
    with staged_run(tmp_path) as stage:
        (stage / "a.txt").write_text("new")
    assert sorted(os.listdir(tmp_path)) == ["a.txt"]


@pytest.mark.parametrize("content", [b"{not json", b"\xff\xfe", b"[1, 2]"])
def test_a_manifest_that_is_not_a_json_object_is_one_line(tmp_path, content):
    from semcomp.artifacts import ArtifactError, load_manifest

    (tmp_path / "manifest.json").write_bytes(content)
    with pytest.raises(ArtifactError, match="pipeline.py") as e:
        load_manifest(tmp_path)
    assert "\n" not in str(e.value)
