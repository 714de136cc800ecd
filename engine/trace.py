"""Debug logging in the manner of QEMU's -d/-D: named categories, one line each."""
from __future__ import annotations

import sys
from typing import TextIO

CATEGORIES = ("exits", "int", "mmio", "psci", "stage2", "timer", "vgic", "unimp", "guest_errors")

# `-d help`: one line per item, as QEMU's log items (every item of CATEGORIES has one).
HELP = {
    "exits": "show each exit to the hypervisor: reason, ESR_EL2, PC, FAR, cycle",
    "int": "show physical IRQs taken while the guest ran and exceptions injected into the guest",
    "mmio": "show guest MMIO accesses that trap (stage-2 data aborts on device regions)",
    "psci": "show PSCI and SMCCC calls and the system events they raise",
    "stage2": "show stage-2 page mappings made on guest faults",
    "timer": "show timer activity: WFI blocking until the next deadline",
    "vgic": "show virtual GIC activity",
    "unimp": "log unimplemented functionality",
    "guest_errors": "log when the guest does something invalid (eg accessing a non-existent register)",
}


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
