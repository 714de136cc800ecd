"""Guest memory slots (KVM_SET_USER_MEMORY_REGION): IPA ranges backed by host memory.

A read-only slot (KVM_MEM_READONLY) is what a VMM gives a ROM device in ROM mode
(QEMU's ROM-D regions: the virt board's flash): reads and instruction fetches are
served from the backing through stage 2, writes exit to user space as MMIO."""
from __future__ import annotations

import bisect
from dataclasses import dataclass


@dataclass(frozen=True)
class MemSlot:
    ipa: int
    size: int
    host_pa: int          # where the backing lives in host physical memory
    buf: object           # the backing buffer (shared by every pCPU)
    thp: bool = True      # backed by transparent huge pages: faults map 2 MiB blocks
    readonly: bool = False   # KVM_MEM_READONLY: stage 2 maps it without write permission

    def contains(self, ipa: int) -> bool:
        return self.ipa <= ipa < self.ipa + self.size

    def to_host_pa(self, ipa: int) -> int:
        return self.host_pa + (ipa - self.ipa)


class MemSlots:
    def __init__(self):
        self._slots: list[MemSlot] = []

    def add(self, slot: MemSlot) -> None:
        for s in self._slots:
            if slot.ipa < s.ipa + s.size and s.ipa < slot.ipa + slot.size:
                raise ValueError(f"memslot {slot.ipa:#x}+{slot.size:#x} overlaps {s.ipa:#x}+{s.size:#x}")
        bisect.insort(self._slots, slot, key=lambda s: s.ipa)

    def remove(self, slot: MemSlot) -> None:
        self._slots.remove(slot)

    def find(self, ipa: int) -> MemSlot | None:
        i = bisect.bisect_right([s.ipa for s in self._slots], ipa) - 1
        if i >= 0 and self._slots[i].contains(ipa):
            return self._slots[i]
        return None

    def __iter__(self):
        return iter(self._slots)
