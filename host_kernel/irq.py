"""The host's handling of a physical interrupt that arrived while a guest ran
(HCR_EL2.IMO routed it to EL2, the lowvisor switched back): the host takes it
through its own GIC when it re-enables interrupts after __kvm_vcpu_run (KVM
arm.c), in its GIC driver's loop (host_kernel/ipi.py: acknowledge, priority
drop, handler, deactivate where the driver splits EOI, and the IAR read of 1023
that ends the loop), then returns from el1_irq into the run loop."""
from __future__ import annotations

from engine.ledger import HIGHVISOR, HW
from gic.v2_hyp import HCR_EN
from host_kernel import ipi

# source -> (INTID named in the labels, handler label, handler cost, deactivated by the host)
HANDLERS = {
    "vtimer": ("PPI 27 (virtual timer)", "kvm_arch_timer_handler: vtimer fired, update the vGIC",
               "timer_irq_handler", False),         # forwarded: the guest's EOI deactivates it (HW LR)
    "maintenance": ("PPI 25 (maintenance)", "vGIC maintenance interrupt handler", "maintenance_irq_handler", True),
    "sgi": (None, "handle_IPI(IPI_RESCHEDULE): scheduler_ipi (the exit was the kick)",
            "host_event_handler", True),           # the INTID as the design names it: ipi.KICK_SGI
    "timer": ("PPI 30 (host hrtimer)", "hrtimer interrupt: the soft timer of an emulated guest timer",
              "host_event_handler", True),
    "tick": ("PPI 30 (host hrtimer)", "scheduler tick: need_resched", "host_event_handler", True),
}


def pending_sources(vcpu) -> list[tuple[str, object]]:
    """Which physical interrupts are pending at this pCPU: (kind, the host event source or None)."""
    st, cpu = vcpu.cpu.st, vcpu.cpu
    now = cpu.cycles
    out = []
    if vcpu.vm.vgic_hw and vcpu.ctx.vgic.misr and vcpu.ctx.vgic.hcr & HCR_EN:
        out.append(("maintenance", None))
    if not st.timer_masked and vcpu.arch_timer.deadline_cycles() <= now:
        out.append(("vtimer", None))
    if st.host_deadline <= now:
        # due now, or fired already by the vGIC/timer sync after this exit, for an SGI that
        # arrived while the guest ran (it is what made the exit)
        entered = vcpu.lowvisor.entered_at
        due = [(t.kind, t) for t in vcpu.soft_timers
               if (not t.level and t.deadline_cycles() <= now)
               or entered <= (getattr(t, "fired_at", None) or -1) <= now]
        out += due or [("tick", None)]     # the deadline forced to 0: the scheduler's tick
    return out


def handle_host_irq(vcpu) -> None:
    led, st = vcpu.ledger, vcpu.cpu.st
    gic = vcpu.vm.host.gic_version
    where = led.where_map.get(HIGHVISOR, HIGHVISOR)
    led.charge_named(HIGHVISOR, "host IRQ entry (el1_irq, gic_handle_irq)", "host_irq_entry")
    sources = pending_sources(vcpu)
    if any(kind not in ("maintenance", "vtimer") for kind, _ in sources):
        st.host_deadline = 2**64 - 1          # re-armed from the soft timers at the next flush
    for kind, source in sources:
        intid, what, key, deactivate = HANDLERS[kind]
        intid = intid or ipi.KICK_SGI[vcpu.vm.host.design.name]
        before, after = ipi.around_handler(led.costs, gic, where, intid,
                                           deactivate and ipi.SPLIT_EOI[vcpu.vm.host.design.name])
        for step in before:
            led.charge(step.where, step.what, step.cycles)
        if kind == "vtimer":
            # The PPI stays active at the GIC until the guest's EOI deactivates it
            # through the HW list register: no new assertion meanwhile.
            st.timer_masked = 1
        led.charge_named(HIGHVISOR, what, key)
        if kind == "vtimer":
            vcpu.arch_timer.update_level()
        elif isinstance(source, ipi.PhysicalSgi):
            source.take()
        for step in after:
            led.charge(step.where, step.what, step.cycles)
        if vcpu.trace.on("int"):
            vcpu.trace.log("int", f"{vcpu.tag}: physical IRQ ({kind}) while the guest ran")
    if any(kind not in ("maintenance", "vtimer") for kind, _ in sources):
        for t in vcpu.soft_timers:
            t.update_level()
    end = ipi.loop_end(led.costs, gic, where)
    led.charge(end.where, end.what, end.cycles)
    if vcpu.vm.host.design.name != "type1":
        # Linux took the IRQ in the run loop (local_irq_enable after __kvm_vcpu_run): el1_irq
        # returns into it.  Xen took it from the guest: it returns through leave_hypervisor_tail.
        for step in ipi.irq_return_steps(led.costs, where, HW, "linux", "the run loop"):
            led.charge(step.where, step.what, step.cycles)
