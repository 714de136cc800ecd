"""Timers the host emulates in software, reached by trapped MSR/MRS (EC 0x18):
the EL1 physical timer (CNTHCTL_EL2.EL1PCEN = 0 traps CNTP_*) and, with
--no-vtimer, the virtual timer.  While the guest runs, a host soft timer
(the pCPU's host deadline) stands in for the hardware comparator."""
from __future__ import annotations

from engine import layout
from timers import generic_timer as gt


class EmulatedTimer:
    kind = "timer"          # its host soft timer is an hrtimer: a timer PPI at the host's GIC

    def __init__(self, vcpu, name: str, intid: int, virtual: bool):
        self.vcpu, self.name, self.intid, self.virtual = vcpu, name, intid, virtual
        self.ctl = 0
        self.cval = 0
        self.level = False

    def count(self) -> int:
        c = self.vcpu.vm.host.counter.ticks(self.vcpu.cpu.cycles)
        return c - self.vcpu.ctx.timer.cntvoff if self.virtual else c

    def deadline_cycles(self) -> int:
        off = self.vcpu.ctx.timer.cntvoff if self.virtual else 0
        d = gt.deadline_ticks(self.ctl, self.cval, off)
        return gt.NEVER if d == gt.NEVER else self.vcpu.vm.host.counter.cycles_for(d)

    def update_level(self) -> None:
        if not self.level and not self.ctl & gt.CTL_ENABLE:
            return                               # disabled and low: nothing can change
        level = gt.output(self.ctl, self.cval, self.count())
        if level != self.level:
            self.level = level
            self.vcpu.vm.vgic.set_level(self.intid, level, self.vcpu.index)

    # sys_regs accessors: (is_read, value) -> read value
    def access_ctl(self, is_read: bool, value: int) -> int | None:
        if is_read:
            return gt.read_ctl(self.ctl, self.cval, self.count())
        self.ctl = value & (gt.CTL_ENABLE | gt.CTL_IMASK)
        self.update_level()
        return None

    def access_cval(self, is_read: bool, value: int) -> int | None:
        if is_read:
            return self.cval
        self.cval = value
        self.update_level()
        return None

    def access_tval(self, is_read: bool, value: int) -> int | None:
        if is_read:
            return gt.read_tval(self.cval, self.count())
        self.cval = gt.write_tval(value, self.count())
        self.update_level()
        return None


def make_timers(vcpu) -> list[EmulatedTimer]:
    timers = [EmulatedTimer(vcpu, "ptimer", layout.INTID_PHYS_TIMER, virtual=False)]
    if not vcpu.vm.vtimer:
        timers.append(EmulatedTimer(vcpu, "vtimer", layout.INTID_VIRT_TIMER, virtual=True))
    return timers
