"""The host's handling of a physical interrupt that arrived while a guest ran
(HCR_EL2.IMO routed it to EL2, the lowvisor switched back): the host takes it
through its own GIC - acknowledge, handler, end of interrupt - when it
re-enables interrupts after __kvm_vcpu_run (KVM arm.c)."""
from __future__ import annotations

from engine.ledger import HIGHVISOR
from gic.v2_hyp import HCR_EN


def pending_sources(vcpu) -> list[str]:
    """Which physical interrupt lines are asserted at this pCPU."""
    st, cpu = vcpu.cpu.st, vcpu.cpu
    now = cpu.cycles
    out = []
    if vcpu.vm.vgic_hw and vcpu.ctx.vgic.misr and vcpu.ctx.vgic.hcr & HCR_EN:
        out.append("maintenance")
    if not st.timer_masked and vcpu.arch_timer.deadline_cycles() <= now:
        out.append("vtimer")
    if st.host_deadline <= now:
        out.append("host")
    return out


def handle_host_irq(vcpu) -> None:
    led, st = vcpu.ledger, vcpu.cpu.st
    led.charge_named(HIGHVISOR, "host IRQ entry (el1_irq, gic_handle_irq)", "host_irq_entry")
    for src in pending_sources(vcpu) or ["spurious"]:
        led.charge_named(HIGHVISOR, "host GICC_IAR read: acknowledge", "gicc_mmio_read")
        if src == "vtimer":
            # The PPI stays active at the GIC until the guest's EOI deactivates it
            # through the HW list register: no new assertion meanwhile.
            st.timer_masked = 1
            led.charge_named(HIGHVISOR, "kvm_arch_timer_handler: vtimer fired, update the vGIC", "timer_irq_handler")
            vcpu.arch_timer.update_level()
        elif src == "maintenance":
            led.charge_named(HIGHVISOR, "vGIC maintenance interrupt handler", "maintenance_irq_handler")
        elif src == "host":
            st.host_deadline = 2**64 - 1
            led.charge_named(HIGHVISOR, "host event (IPI / soft timer) handler", "host_event_handler")
            for t in vcpu.soft_timers:
                t.update_level()
        if vcpu.trace.on("int"):
            vcpu.trace.log("int", f"{vcpu.tag}: physical IRQ ({src}) while the guest ran")
        led.charge_named(HIGHVISOR, "host GICC_EOIR write: priority drop", "gicc_mmio_write")
