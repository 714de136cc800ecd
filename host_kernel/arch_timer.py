"""The vCPU's virtual timer as KVM's arch_timer sees it (arch/arm64/kvm/arch_timer.c).

While the guest runs, the timer is hardware (the engine's fast path) and its
output raises a physical PPI that traps to EL2.  Around each run the host
syncs the output level into the vGIC (it follows the level even while the
interrupt is disabled in the distributor); while the vCPU is blocked a host
soft timer stands in for it.  The interrupt is mapped to the physical PPI
(the HW bit), so the guest's EOI deactivates it."""
from __future__ import annotations

from engine.ledger import HIGHVISOR
from engine import layout
from timers import generic_timer as gt

VTIMER_INTID = layout.INTID_VIRT_TIMER


class ArchTimer:
    def __init__(self, vcpu, counter: gt.Counter):
        self.vcpu, self.counter = vcpu, counter
        self.level = False

    def _virtual_count(self) -> int:
        return self.counter.ticks(self.vcpu.cpu.cycles) - self.vcpu.ctx.timer.cntvoff

    def output(self) -> bool:
        t = self.vcpu.ctx.timer
        return gt.output(t.cntv_ctl, t.cntv_cval, self._virtual_count())

    def deadline_cycles(self) -> int:
        """When the output will assert (cycles), for the host soft timer; NEVER if it won't."""
        t = self.vcpu.ctx.timer
        d = gt.deadline_ticks(t.cntv_ctl, t.cntv_cval, t.cntvoff)
        return gt.NEVER if d == gt.NEVER else self.counter.cycles_for(d)

    def update_level(self) -> None:
        """kvm_timer_update_irq: the vGIC line follows the timer output."""
        if not self.level and not self.vcpu.ctx.timer.cntv_ctl & gt.CTL_ENABLE:
            return                               # disabled and low: nothing can change
        level = self.output()
        if level != self.level:
            self.level = level
            self.vcpu.vm.vgic.set_level(VTIMER_INTID, level, self.vcpu.index)

    def sync(self) -> None:
        self.vcpu.ledger.charge_named(HIGHVISOR, "timer sync (kvm_timer_sync_hwstate)", "timer_sync")
        self.update_level()

    def flush(self) -> None:
        self.vcpu.ledger.charge_named(HIGHVISOR, "timer flush (kvm_timer_flush_hwstate)", "timer_flush")
        self.update_level()
        if self.vcpu.vm.vtimer:
            # kvm_timer_vcpu_load_gic: while the guest has the interrupt asserted or active,
            # the physical PPI is marked active so it does not fire again; the guest's EOI
            # through the HW list register deactivates it.
            irq = self.vcpu.vm.vgic.irq_state(VTIMER_INTID, self.vcpu.index)
            self.vcpu.cpu.st.timer_masked = int(self.level or irq.active)
