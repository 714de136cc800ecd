"""Wiring of the GICv3 virtual CPU interface to a physical CPU.  With
HCR_EL2.IMO/FMO set, EL1's ICC_* system-register accesses reach the ICV_*
registers: hardware, no trap.  The SGI-generation registers trap to EL2.  The
core has no GIC system registers, so the engine routes each access here (see
engine.core, ICC route); the interface's output drives the virtual IRQ."""
from __future__ import annotations

from typing import Callable

from engine.core import ICC_TRAP

ICC_SGI1R_EL1 = (3, 0, 12, 11, 5)
ICC_ASGI1R_EL1 = (3, 1, 12, 11, 6)
ICC_SGI0R_EL1 = (3, 2, 12, 11, 7)
TRAPPED = frozenset({ICC_SGI1R_EL1, ICC_ASGI1R_EL1, ICC_SGI0R_EL1})   # IHI 0069 12.1.8


def key_tuple(key: int) -> tuple[int, int, int, int, int]:
    """The engine's packed (op0, op1, CRn, CRm, op2) as a tuple."""
    return (key >> 16 & 3, key >> 12 & 7, key >> 8 & 0xF, key >> 4 & 0xF, key & 7)


class IcvPort:
    def __init__(self, cpu, vcpuif, ledger, set_line: Callable[[bool], None]):
        self.cpu, self.vcpuif, self.ledger, self.set_line = cpu, vcpuif, ledger, set_line
        self.emulated = False          # --no-vgic: every ICC_* access traps to EL2
        c = ledger.costs
        self._c_read, self._c_write = c["icv_sysreg_read"], c["icv_sysreg_write"]
        self.accesses = 0
        cpu.st.gicv3 = 1
        cpu.icc_handler = self.access

    def update_line(self) -> None:
        self.set_line(self.vcpuif.irq_line())

    def access(self, key: int, is_read: bool, value: int):
        k = key_tuple(key)
        if self.emulated or k in TRAPPED:
            return ICC_TRAP
        self.accesses += 1
        if is_read:
            result = self.vcpuif.read(k)
            self.ledger.charge("guest EL1", lambda: f"ICV read S{k[0]}_{k[1]}_C{k[2]}_C{k[3]}_{k[4]} (no trap)",
                               self._c_read)
        else:
            self.vcpuif.write(k, value)
            result = 0
            self.ledger.charge("guest EL1", lambda: f"ICV write S{k[0]}_{k[1]}_C{k[2]}_C{k[3]}_{k[4]} (no trap)",
                               self._c_write)
        self.update_line()
        return result
