"""Cycle charging.  Every modeled operation charges named cycles here; the sum
moves the pCPU's virtual clock, and a recording captures the ordered steps of
one trap path so a table can be built from what really ran."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional

GUEST = "guest EL1"
HW = "hardware"
LOWVISOR = "lowvisor EL2"
HIGHVISOR = "highvisor EL1"
USER = "VMM user space"


@dataclass(frozen=True)
class Step:
    where: str
    what: str
    cycles: int
    group: str = ""      # register group, for the world-switch table
    kind: str = ""       # "save" / "restore" / "" for other steps
    regs: int = 0


class Ledger:
    def __init__(self, cpu, costs: Mapping[str, int]):
        self.cpu = cpu
        self.costs = costs
        self.steps: Optional[list[Step]] = None

    def cost(self, name: str) -> int:
        return self.costs[name]

    def charge(self, where: str, what: str, cycles: int, group: str = "", kind: str = "",
               regs: int = 0) -> None:
        self.cpu.st.charged += cycles
        if self.steps is not None:
            self.steps.append(Step(where, what, cycles, group, kind, regs))

    def charge_named(self, where: str, what: str, name: str) -> None:
        """Charge a named primitive or host software path from the profile."""
        self.charge(where, what, self.costs[name])

    def note(self, where: str, what: str, cycles: int) -> None:
        """Record a step whose cycles the clock already holds (a retired guest instruction)."""
        if self.steps is not None:
            self.steps.append(Step(where, what, cycles))

    def start_recording(self) -> list[Step]:
        self.steps = []
        return self.steps

    def stop_recording(self) -> list[Step]:
        steps, self.steps = self.steps or [], None
        return steps
