"""A module of this repository as it was at a commit, imported under another name, for same-run
A/B benches of old code against new (docs/bench/edit-keys, docs/bench/edit-arrays)."""
from __future__ import annotations

import importlib.util
import subprocess
import tempfile
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def module_at(commit: str, path: str) -> ModuleType:
    """`path` (e.g. semcomp/decoders/edit.py) at `commit`; its relative imports point at the
    package as it is now."""
    src = subprocess.run(["git", "show", f"{commit}:{path}"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    package = ".".join(Path(path).parent.parts)
    src = src.replace("from .", f"from {package}.")
    file = Path(tempfile.mkdtemp()) / f"{Path(path).stem}_{commit}.py"
    file.write_text(src)
    spec = importlib.util.spec_from_file_location(file.stem, file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
