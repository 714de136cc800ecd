"""Wiring of the GICv2 virtual CPU interface (GICV) to a physical CPU: the
interface is a device on the physical bus that stage 2 maps at the guest's
GICC address, so the guest's IAR/EOIR accesses reach it with no trap; its
virtual IRQ output drives the core's virtual IRQ input."""
from __future__ import annotations

from typing import Callable

GICV_SIZE = 0x2000           # GICV_DIR lives in the second 4 KB page
READ_NAMES = {0x00: "GICV_CTLR", 0x04: "GICV_PMR", 0x08: "GICV_BPR", 0x0C: "GICV_IAR", 0x14: "GICV_RPR",
              0x18: "GICV_HPPIR", 0x1C: "GICV_ABPR", 0x20: "GICV_AIAR", 0x28: "GICV_AHPPIR",
              0xD0: "GICV_APR0", 0xFC: "GICV_IIDR"}
WRITE_NAMES = {0x00: "GICV_CTLR", 0x04: "GICV_PMR", 0x08: "GICV_BPR", 0x10: "GICV_EOIR", 0x1C: "GICV_ABPR",
               0x24: "GICV_AEOIR", 0xD0: "GICV_APR0", 0x1000: "GICV_DIR"}


class GicvPort:
    def __init__(self, cpu, vcpuif, ledger, set_line: Callable[[bool], None]):
        self.cpu, self.vcpuif, self.ledger, self.set_line = cpu, vcpuif, ledger, set_line
        c = ledger.costs
        self._c_read, self._c_write = c["gicv_mmio_read"], c["gicv_mmio_write"]
        self.accesses = 0

    def attach(self, pa: int) -> None:
        self.cpu.map_device(pa, GICV_SIZE, self.read, self.write)

    def update_line(self) -> None:
        self.set_line(self.vcpuif.irq_line())

    def read(self, offset: int, size: int) -> int:
        value = self.vcpuif.read(offset, size)
        self.accesses += 1
        self.ledger.charge("guest EL1", f"{READ_NAMES.get(offset, hex(offset))} read (GICV, no trap)",
                           self._c_read)
        self.update_line()
        return value

    def write(self, offset: int, size: int, value: int) -> None:
        self.vcpuif.write(offset, size, value)
        self.accesses += 1
        self.ledger.charge("guest EL1", f"{WRITE_NAMES.get(offset, hex(offset))} write (GICV, no trap)",
                           self._c_write)
        self.update_line()
