"""The artifacts folder: atomic writes, a staged run that replaces the last one whole, the manifest."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator

from .errors import UserError
from .util import sha256_file

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
BASELINES = "baselines"  # cache/ subfolder of trained FAISS quantisers: evaluate.py's baselines and the codecs' RQ starts


class ArtifactError(UserError, RuntimeError):
    """Missing, foreign or mixed-up artifacts: one line, naming the fix."""


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "wb") -> Iterator[IO[Any]]:
    """Write to a temp file beside `path`, then rename over it: a crash leaves the old file whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:  # Ctrl-C included: never leave the temp file behind
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def save_tensors(state: dict[str, Any], shape: dict[str, Any], weights_path: str | Path, shape_path: str | Path) -> None:
    """A model's tensors as safetensors (never pickle) and its constructor arguments as JSON."""
    from safetensors.torch import save

    with atomic_write(weights_path) as f:
        f.write(save({k: v.detach().contiguous() for k, v in state.items()}))
    write_json(shape_path, shape)


def load_tensors(weights_path: str | Path, shape_path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(tensors, constructor arguments) as `save_tensors` wrote them."""
    from safetensors.torch import load_file

    return load_file(str(weights_path)), json.loads(Path(shape_path).read_text())


def write_json(path: str | Path, obj: Any) -> None:
    with atomic_write(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=False)
        f.write("\n")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


@contextlib.contextmanager
def exclusive(artifacts_dir: str | Path) -> Iterator[None]:
    """Hold the folder for one pipeline build: a second build at once would train, stage and swap
    the same files; it is refused in one line instead of waiting for a build of unknown length."""
    from filelock import FileLock, Timeout

    root = Path(artifacts_dir)
    root.mkdir(parents=True, exist_ok=True)
    lock = FileLock(root / ".lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise ArtifactError(f"{root} is busy: another `pipeline.py` is building it; wait for it to finish "
                            f"or pass --artifacts DIR") from None
    try:
        yield
    finally:
        lock.release()


@contextlib.contextmanager
def staged_run(artifacts_dir: str | Path) -> Iterator[Path]:
    """Yield an empty staging folder; on success move its files into `artifacts_dir`, manifest last.

    Until that last rename the previous manifest still describes the previous files, and every
    artifact is checked against the manifest's sha256 on load, so a run cut short never yields a
    silently mixed set.
    """
    root = Path(artifacts_dir)
    root.mkdir(parents=True, exist_ok=True)
    for old in root.glob(".staging-*"):  # left by a run that was killed outright (SIGKILL, power loss)
        pid = old.name.split("-")[1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    stage = Path(tempfile.mkdtemp(dir=root, prefix=f".staging-{os.getpid()}-"))
    try:
        yield stage
        names = sorted(p.name for p in stage.iterdir() if p.name != MANIFEST)
        for name in names + ([MANIFEST] if (stage / MANIFEST).exists() else []):
            os.replace(stage / name, root / name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def load_manifest(artifacts_dir: str | Path) -> dict[str, Any]:
    path = Path(artifacts_dir) / MANIFEST
    if not path.exists():
        raise ArtifactError(f"no {path}: run `python pipeline.py` first (or pass --artifacts DIR)")
    try:
        manifest = read_json(path)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ArtifactError(f"{path} is unreadable or not JSON ({type(e).__name__}): re-run `python pipeline.py`") from None
    if not isinstance(manifest, dict) or manifest.get("format_version") != FORMAT_VERSION:
        version = manifest.get("format_version") if isinstance(manifest, dict) else None
        raise ArtifactError(f"{path} is format {version}, this semcomp reads "
                            f"{FORMAT_VERSION}: re-run `python pipeline.py`")
    return manifest


def verify(artifacts_dir: str | Path, manifest: dict[str, Any], names: list[str]) -> None:
    """Check named artifacts against the manifest's sha256 (mixed or edited runs are refused)."""
    for name in names:
        path = Path(artifacts_dir) / name
        want = manifest["files"].get(name, {}).get("sha256")
        if not path.exists():
            raise ArtifactError(f"{path} is missing: re-run `python pipeline.py`")
        if want != sha256_file(path):
            raise ArtifactError(f"{path} does not match {MANIFEST} (artifacts of different runs mixed); "
                                f"re-run `python pipeline.py`")
