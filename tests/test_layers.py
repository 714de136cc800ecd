"""DESIGN.md section 2: dependencies point one way (armvirt -> host_kernel -> el2,
gic, timers -> engine).  The lowvisor hands exits and the type-1 paths through return
values and the design, never by importing the layers above it."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ABOVE = {"el2": ("host_kernel", "armvirt"), "gic": ("host_kernel", "armvirt"),
         "timers": ("host_kernel", "armvirt"), "engine": ("el2", "host_kernel", "armvirt")}


def upward_imports(package: str) -> list[str]:
    """Every import (module-level or inside a function) of a layer above `package`."""
    found = []
    for path in sorted((ROOT / package).glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            found += [f"{path.name}:{node.lineno}: {n}" for n in names
                      if n.split(".")[0] in ABOVE[package]]
    return found


@pytest.mark.parametrize("package", sorted(ABOVE))
def test_no_layer_imports_a_layer_above_it(package):
    bad = upward_imports(package)
    assert bad == [], f"{package}/ must not import {', '.join(ABOVE[package])}; found: {bad}"


def test_the_check_sees_a_function_local_import(tmp_path, monkeypatch):
    """The scan would have caught el2/lowvisor.py's old `from host_kernel.dom0 import ...`
    inside __init__."""
    (tmp_path / "el2").mkdir()
    (tmp_path / "el2" / "x.py").write_text("def f():\n    from host_kernel.dom0 import Dom0Paths\n")
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)
    assert upward_imports("el2") == ["x.py:2: host_kernel.dom0"], upward_imports("el2")
