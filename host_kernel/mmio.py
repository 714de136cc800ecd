"""The MMIO bus: devices keyed by address range, seeing offsets, never addresses
(Firecracker vstate/bus.rs).  Overlapping registrations are refused."""
from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Protocol


class MmioDevice(Protocol):
    name: str

    def read(self, offset: int, size: int) -> int: ...

    def write(self, offset: int, size: int, value: int) -> None: ...


@dataclass(frozen=True)
class BusRange:
    base: int
    size: int
    device: MmioDevice


class MmioBus:
    def __init__(self, name: str):
        self.name = name
        self._ranges: list[BusRange] = []
        self._bases: list[int] = []

    def register(self, base: int, size: int, device: MmioDevice) -> None:
        for r in self._ranges:
            if base < r.base + r.size and r.base < base + size:
                raise ValueError(f"{self.name}: {device.name} at {base:#x}+{size:#x} overlaps "
                                 f"{r.device.name} at {r.base:#x}+{r.size:#x}")
        i = bisect.bisect(self._bases, base)
        self._ranges.insert(i, BusRange(base, size, device))
        self._bases.insert(i, base)

    def find(self, addr: int) -> tuple[MmioDevice, int] | None:
        """(device, offset) for `addr`, or None if no device claims it."""
        i = bisect.bisect_right(self._bases, addr) - 1
        if i >= 0:
            r = self._ranges[i]
            if addr < r.base + r.size:
                return r.device, addr - r.base
        return None

    def __iter__(self):
        return iter(self._ranges)


@dataclass
class MmioAccess:
    """One emulated access, as struct kvm_run.mmio carries it to user space."""
    phys_addr: int
    size: int
    is_write: bool
    data: int = 0
    # how to complete a read into the guest's register (from the ISS)
    rt: int = 0
    sign_extend: bool = False
    sixty_four: bool = False


def complete_read_value(acc: MmioAccess) -> int:
    """Value written to Rt for a read (ARM ARM: SSE sign-extends to 32 or 64 bits per SF)."""
    bits = 8 * acc.size
    v = acc.data & ((1 << bits) - 1)
    if acc.sign_extend and v >> (bits - 1):
        v -= 1 << bits
        v &= (1 << (64 if acc.sixty_four else 32)) - 1
    return v
