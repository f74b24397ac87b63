"""The house: semcomp's modules stand on floors, each above everything it imports (a reader can
draw it), with no circle; a function-level import of a package module only for the optional or
heavy rooms (Ray, llama.cpp, ONNX Runtime, matplotlib)."""
from __future__ import annotations

import ast
from functools import lru_cache
from pathlib import Path

PKG = Path(__file__).resolve().parents[2] / "semcomp"
MAX_FLOORS = 9
LAZY_OK = {"semcomp.engine_ray", "semcomp.decoders.local", "semcomp.decoders.inverter", "semcomp.onnx_embed",
           "semcomp.report"}
# `semcomp.Codec` is a lazy attribute (sentence-transformers' way): `import semcomp.data` needs no torch
LAZY_PAIRS = {("semcomp", "semcomp.codec")}


def _name(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_name(p): p for p in PKG.rglob("*.py")}


@lru_cache(maxsize=None)
def imports(module: str) -> tuple[set[str], set[str]]:
    """(package modules imported at the top, those imported inside functions)."""
    path = MODULES[module]
    tree = ast.parse(path.read_text())
    top, inner = set(), set()
    base = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.ImportFrom) and node.level:
            pkg = ".".join(base[: len(base) - node.level + 1] + ([node.module] if node.module else []))
            targets = [f"{pkg}.{a.name}" if f"{pkg}.{a.name}" in MODULES else pkg for a in node.names]
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            targets = [n for n in names if n in MODULES]
        (top if node in tree.body else inner).update(t for t in targets if t in MODULES and t != module)
    return top, inner


def floors() -> dict[str, int]:
    out: dict[str, int] = {}

    def floor(m: str, path: tuple[str, ...]) -> int:
        assert m not in path, "import circle: " + " -> ".join(path + (m,))
        if m not in out:
            out[m] = 1 + max((floor(t, path + (m,)) for t in imports(m)[0] | imports(m)[1]), default=0)
        return out[m]

    for m in MODULES:
        floor(m, ())
    return out


def test_imports_run_only_down_with_no_circle_on_few_floors():
    f = floors()
    assert max(f.values()) <= MAX_FLOORS, sorted(f.items(), key=lambda kv: kv[1])


def test_package_imports_inside_functions_only_for_optional_or_heavy_rooms():
    hidden = {(m, t) for m in MODULES for t in imports(m)[1] if t not in LAZY_OK} - LAZY_PAIRS
    assert not hidden


def test_the_checker_sees_a_circle(tmp_path, monkeypatch):
    """The floors test can fail: two modules importing each other are reported."""
    import pytest

    a, b = tmp_path / "semcomp" / "a.py", tmp_path / "semcomp" / "b.py"
    a.parent.mkdir()
    a.write_text("from .b import x\n")
    b.write_text("from .a import y\n")
    monkeypatch.setitem(MODULES, "semcomp.a", a)
    monkeypatch.setitem(MODULES, "semcomp.b", b)
    imports.cache_clear()
    try:
        with pytest.raises(AssertionError, match="import circle"):
            floors()
    finally:
        imports.cache_clear()
