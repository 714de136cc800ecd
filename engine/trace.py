"""Debug logging in the manner of QEMU's -d/-D: named categories, one line each."""
from __future__ import annotations

import sys
from typing import TextIO

CATEGORIES = ("exits", "int", "mmio", "psci", "stage2", "timer", "vgic", "unimp", "guest_errors")


class Tracer:
    def __init__(self, categories: set[str] | None = None, out: TextIO | None = None):
        self.categories = categories or set()
        self.out = out or sys.stderr

    def on(self, cat: str) -> bool:
        return cat in self.categories

    def log(self, cat: str, msg: str) -> None:
        if cat in self.categories:
            self.out.write(f"[{cat}] {msg}\n")


NULL = Tracer()
