"""ARM PrimeCell Real Time Clock PL031 (ARM DDI 0224), the user-space device model,
with QEMU's hw/rtc/pl031.c as the behavioural reference.

The counter never reads the host clock: it is EPOCH plus the seconds of virtual time
since power-on (the system counter's ticks / CNTFRQ, the same time base as the
guest's CNTPCT), so a guest sees the same date on every run.  A write to RTCLR sets
the count from then on; RTCMR raises the match interrupt (SPI 2) when the count
reaches it, as a VMM timer at the virtual time of that second.  RTCCR reads 1 and
ignores writes (QEMU: the RTC is always running).
"""
from __future__ import annotations

from typing import Callable

from armvirt.devices.pl011 import DeviceError

RTCDR, RTCMR, RTCLR, RTCCR, RTCIMSC, RTCRIS, RTCMIS, RTCICR = range(0, 0x20, 4)
ID_REGS = {0xFE0: 0x31, 0xFE4: 0x10, 0xFE8: 0x14, 0xFEC: 0x00,     # PeriphID (as QEMU)
           0xFF0: 0x0D, 0xFF4: 0xF0, 0xFF8: 0x05, 0xFFC: 0xB1}     # PrimeCell ID
EPOCH = 1_735_689_600            # 2025-01-01T00:00:00Z: the date at power-on, fixed
NEVER = 2**64 - 1
_MASK32 = 0xFFFF_FFFF


class Pl031:
    name = "pl031"

    def __init__(self, seconds: Callable[[int], int], cycles_at: Callable[[int], int],
                 irq: Callable[[bool], None] = lambda level: None):
        """`seconds(cycles)`: whole seconds of virtual time at `cycles`; `cycles_at(s)`:
        the first cycle at which `s` seconds have passed."""
        self.seconds, self.cycles_at, self.irq = seconds, cycles_at, irq
        self.offset = EPOCH              # count = offset + seconds(now)
        self.mr = self.lr = 0
        self.imsc = self.ris = 0
        self.level = False
        self.match_at: int | None = None

    def count(self, now: int) -> int:
        return (self.offset + self.seconds(now)) & _MASK32

    def _arm(self, now: int) -> None:
        """QEMU pl031_set_alarm: the match fires when the count next equals RTCMR."""
        ticks = (self.mr - self.count(now)) & _MASK32
        self.match_at = now if ticks == 0 else self.cycles_at(self.seconds(now) + ticks)

    def deadline(self) -> int:
        return NEVER if self.match_at is None else self.match_at

    def event(self, now: int) -> None:
        if self.match_at is not None and self.match_at <= now:
            self.match_at = None
            self.ris = 1
            self._update()

    def _update(self) -> None:
        level = bool(self.ris & self.imsc)
        if level != self.level:
            self.level = level
            self.irq(level)

    def read(self, offset: int, size: int, now: int = 0) -> int:
        regs = {RTCDR: lambda: self.count(now), RTCMR: lambda: self.mr, RTCLR: lambda: self.lr,
                RTCCR: lambda: 1, RTCIMSC: lambda: self.imsc, RTCRIS: lambda: self.ris,
                RTCMIS: lambda: self.ris & self.imsc}
        if offset in regs:
            return regs[offset]()
        if offset in ID_REGS:
            return ID_REGS[offset]
        raise DeviceError(f"PL031 read of offset {offset:#x}, which is no readable register")

    def write(self, offset: int, size: int, value: int, now: int = 0) -> None:
        value &= _MASK32
        if offset == RTCMR:
            self.mr = value
            self._arm(now)
        elif offset == RTCLR:
            self.lr = value
            self.offset = (value - self.seconds(now)) & _MASK32
            self._arm(now)
        elif offset == RTCCR:
            pass                         # always running
        elif offset == RTCIMSC:
            self.imsc = value & 1
        elif offset == RTCICR:
            self.ris &= ~value & 1
        else:
            raise DeviceError(f"PL031 write of offset {offset:#x}, which is no writable register")
        self._update()
