"""Guest memory as the debugger sees it: the address a vCPU sees (its stage-1
translation, armvirt.gdbstub.stage1), then the VM's IPA space as the hypervisor
backs it: the memory slots, which stage 2 maps (on first touch, host_kernel/mmu.py).
IPAs without a slot are devices (MMIO, the GICV page) and are refused, so that a
debugger read never reaches a device model; so are unmapped addresses."""
from __future__ import annotations

import struct

from engine import sysreg as S
from armvirt.gdbstub import stage1

PAGE = 4096


class GuestMemory:
    def __init__(self, vm):
        self.vm = vm

    def _span(self, ipa: int, n: int):
        """(buffer, offset) of [ipa, ipa+n) inside one memory slot, or None."""
        slot = self.vm.memslots.find(ipa)
        if slot is None or not slot.contains(ipa + n - 1):
            return None
        return slot.buf, ipa - slot.ipa

    def read_ipa(self, ipa: int, n: int) -> bytes | None:
        span = self._span(ipa, n)
        if span is None:
            return None
        buf, off = span
        return bytes(buf[off:off + n])

    def _read64(self, ipa: int) -> int | None:
        raw = self.read_ipa(ipa, 8)
        return None if raw is None else struct.unpack("<Q", raw)[0]

    def translate(self, state, va: int) -> stage1.Translation:
        return stage1.translate(va, state.sysreg(S.SCTLR_EL1), state.sysreg(S.TCR_EL1),
                                state.sysreg(S.TTBR0_EL1), state.sysreg(S.TTBR1_EL1), self._read64)

    def _pieces(self, state, va: int, n: int):
        """(ipa, length) for each page the range touches, or None if one is unmapped."""
        out = []
        while n > 0:
            chunk = min(n, PAGE - (va & (PAGE - 1)))
            t = self.translate(state, va)
            if t.ipa is None or self._span(t.ipa, chunk) is None:
                return None
            out.append((t.ipa, chunk))
            va, n = va + chunk, n - chunk
        return out

    def read(self, state, va: int, n: int) -> bytes | None:
        pieces = self._pieces(state, va, n)
        if pieces is None:
            return None
        return b"".join(self.read_ipa(ipa, k) for ipa, k in pieces)

    def write(self, state, va: int, data: bytes) -> bool:
        pieces = self._pieces(state, va, len(data))
        if pieces is None:
            return False
        pos = 0
        for ipa, k in pieces:
            buf, off = self._span(ipa, k)
            buf[off:off + k] = data[pos:pos + k]
            pos += k
        for cpu in self.vm.host.pcpus:         # host writes do not invalidate translated code
            cpu.uc.ctl_flush_tb()
        return True

    def host_ranges(self, state, va: int, n: int):
        """The host physical ranges (lo, hi inclusive) behind [va, va+n): where the
        engine sees the accesses (memory hooks are bounded by physical address)."""
        pieces = self._pieces(state, va, n)
        if pieces is None:
            return None
        out = []
        for ipa, k in pieces:
            pa = self.vm.memslots.find(ipa).to_host_pa(ipa)
            out.append((pa, pa + k - 1))
        return out
