"""Generic timer semantics (ARM ARM D11.2): the condition CNTxCT >= CVAL, the
output ENABLE && !IMASK && condition, ISTATUS, and TVAL as the signed 32-bit
view of CVAL - count.  Pure functions, used by the host (soft timers, the level
the vGIC sees) and by the emulated physical timer; the engine's fast path
applies the same rules to the virtual timer while the guest runs."""
from __future__ import annotations

from dataclasses import dataclass

CTL_ENABLE, CTL_IMASK, CTL_ISTATUS = 1, 2, 4
NEVER = 2**64 - 1


@dataclass(frozen=True)
class Counter:
    """The system counter: ticks = floor(cycles * cntfrq / cpu_hz), exact in integers."""
    mul: int
    div: int

    @classmethod
    def for_clock(cls, cpu_hz: int, cntfrq_hz: int) -> "Counter":
        from math import gcd
        g = gcd(cpu_hz, cntfrq_hz)
        return cls(cntfrq_hz // g, cpu_hz // g)

    def ticks(self, cycles: int) -> int:
        return cycles * self.mul // self.div

    def cycles_for(self, ticks: int) -> int:
        """First cycle at which the count reaches `ticks`."""
        return -(-ticks * self.div // self.mul)


def condition(cval: int, count: int) -> bool:
    return count >= cval


def istatus(ctl: int, cval: int, count: int) -> bool:
    return bool(ctl & CTL_ENABLE) and condition(cval, count)


def output(ctl: int, cval: int, count: int) -> bool:
    """The interrupt line: ISTATUS and not IMASK."""
    return istatus(ctl, cval, count) and not ctl & CTL_IMASK


def read_ctl(ctl: int, cval: int, count: int) -> int:
    return (ctl & (CTL_ENABLE | CTL_IMASK)) | (CTL_ISTATUS if istatus(ctl, cval, count) else 0)


def read_tval(cval: int, count: int) -> int:
    return (cval - count) & 0xFFFFFFFF


def write_tval(tval: int, count: int) -> int:
    """CVAL = count + SignExtend(TVAL[31:0])."""
    t = tval & 0xFFFFFFFF
    if t & 0x8000_0000:
        t -= 1 << 32
    return (count + t) & (2**64 - 1)


def deadline_ticks(ctl: int, cval: int, offset: int = 0) -> int:
    """Physical count at which the output asserts, or NEVER."""
    if ctl & (CTL_ENABLE | CTL_IMASK) != CTL_ENABLE:
        return NEVER
    return min(cval + offset, NEVER)
