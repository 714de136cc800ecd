"""Physical interrupts between pCPUs (GIC software-generated interrupts), as the
hardware does them (IHI 0048B 4.3.15 GICD_SGIR; IHI 0069 12.2.22 ICC_SGI1R_EL1):

- the sender writes the distributor's SGI register: GICv2 GICD_SGIR, a posted
  MMIO write (the core does not wait for it); GICv3 ICC_SGI1R_EL1, a system
  register write;
- the distributor forwards the SGI to the target's CPU interface;
- the target takes an IRQ exception and runs its GIC driver's loop (Linux
  gic_handle_irq, Xen gic_interrupt / do_static_sgi): acknowledge (an IAR read:
  a GIC register read, which stalls), priority drop (EOIR), the handler,
  deactivate (DIR: EOImode 1, as Linux at EL2 and Xen run the GIC), then IAR
  once more, which reads 1023 (nothing pending) and ends the loop.

Every access is charged at the profile's primitive for it (GICC/GICD MMIO on
GICv2, ICC_* system registers on GICv3).  The same steps serve every receiver:
a pCPU running a guest (its IRQ exit; the lowvisor's exit path around them), an
idle host pCPU woken for a back-end thread, dom0's pCPU under Xen.

A kick of a vCPU running on another pCPU is a `PhysicalSgi` source on that
vCPU: the IRQ is raised when the SGI arrives in the receiver's time, the steps
are charged on the receiver's ledger, and the two ledgers join at the send.
"""
from __future__ import annotations

from engine.ledger import HW, Step
from timers.generic_timer import NEVER

# (register, cost name) of each access to the host's own GIC, per GIC version
ACCESS = {
    2: {"sgi": ("GICD_SGIR write (posted)", "gicd_mmio_write"), "ack": ("GICC_IAR read", "gicc_mmio_read"),
        "eoi": ("GICC_EOIR write", "gicc_mmio_write"), "dir": ("GICC_DIR write", "gicc_mmio_write")},
    3: {"sgi": ("ICC_SGI1R_EL1 write", "icc_sysreg_write"), "ack": ("ICC_IAR1_EL1 read", "icc_sysreg_read"),
        "eoi": ("ICC_EOIR1_EL1 write", "icc_sysreg_write"), "dir": ("ICC_DIR_EL1 write", "icc_sysreg_write")},
}
# who sends the SGI that kicks a running vCPU, per design
KICK = {"nvhe": "kvm_vcpu_kick: smp_send_reschedule", "vhe": "kvm_vcpu_kick: smp_send_reschedule",
        "type1": "vcpu_kick: smp_send_event_check_mask (GIC_SGI_EVENT_CHECK)"}
# ... and for a vCPU asleep in WFI: the sender wakes its thread / unit first, then tickles its pCPU
WAKE_SENDER = {
    "nvhe": (("kvm_vcpu_kick -> kvm_vcpu_wake_up -> try_to_wake_up(vCPU{n}'s thread): its pCPU is idle",
              "linux_ttwu"),),
    "type1": (("vcpu_kick -> vcpu_unblock -> vcpu_wake: vCPU{n} onto a run queue (xen/common/sched/core.c)",
               "xen_sched_wake"),
              ("runq_tickle: vCPU{n}'s pCPU is idle, cpu_raise_softirq(SCHEDULE_SOFTIRQ)", "xen_runq_tickle")),
}
WAKE_SENDER["vhe"] = WAKE_SENDER["nvhe"]
# ... for a vCPU whose WFx exit decided to block but whose pCPU has not gone idle yet (the kick
# comes between kvm_vcpu_check_block and schedule()'s switch): its thread is still current on
# its CPU, so the wake-up only makes it runnable again and no IPI is sent - Linux
# try_to_wake_up -> ttwu_remote (p->on_rq), kvm_vcpu_kick sends none outside guest mode
# (kvm_arch_vcpu_should_kick); Xen vcpu_wake of a running unit ("unit_wake_running"), no
# tickle.  Its schedule() then picks it again: no context switch, no wake-up from idle.
WAKE_NOT_ASLEEP = {
    "nvhe": ("kvm_vcpu_kick -> kvm_vcpu_wake_up -> try_to_wake_up(vCPU{n}'s thread): still on its "
             "CPU, not asleep yet: TASK_RUNNING again, no IPI", "linux_ttwu"),
    "type1": ("vcpu_kick -> vcpu_unblock -> vcpu_wake: vCPU{n} still running, not descheduled yet: "
              "no tickle", "xen_sched_wake"),
}
WAKE_NOT_ASLEEP["vhe"] = WAKE_NOT_ASLEEP["nvhe"]
NOT_ASLEEP = "schedule(): woken before it slept, no context switch"
WAKE = {"nvhe": "ttwu_queue -> smp_send_reschedule", "vhe": "ttwu_queue -> smp_send_reschedule",
        "type1": "runq_tickle -> smp_send_event_check_mask"}
# the receiver, idle: out of WFI by the SGI, then its scheduler switches to the woken vCPU
WAKE_RECEIVER = {
    "nvhe": (("schedule(): idle -> vCPU{n}'s thread (context switch)", "sched_switch"),),
    "type1": (("do_softirq(SCHEDULE_SOFTIRQ) -> schedule(): the scheduler picks vCPU{n} "
               "(xen/common/sched/core.c)", "xen_schedule"),
              ("context_switch(idle -> vCPU{n}): ctxt_switch_to", "xen_context_switch")),
}
WAKE_RECEIVER["vhe"] = WAKE_RECEIVER["nvhe"]
KICK_SGI = {"nvhe": "SGI 0 (IPI_RESCHEDULE)", "vhe": "SGI 0 (IPI_RESCHEDULE)", "type1": "SGI 0 (GIC_SGI_EVENT_CHECK)"}
KEYS = ("gicd_mmio_write", "gic_sgi_delivery", "icc_sysreg_read", "icc_sysreg_write")
SPURIOUS = 1023
GIC = "GIC distributor"          # where an SGI travels: on neither pCPU's clock


def access(costs, gic_version: int, what: str, where: str, why: str) -> Step:
    reg, key = ACCESS[gic_version][what]
    return Step(where, f"{reg}: {why}", costs[key])


def send_steps(costs, gic_version: int, where: str, caller: str, target: str) -> list[Step]:
    """The sender's side: the SGI register write (charged to the sender), then the
    distributor's delivery to the target (in parallel with the sender, not charged to it)."""
    return [access(costs, gic_version, "sgi", where, f"{caller}, SGI to {target}"),
            Step(GIC, f"GIC distributor: the SGI reaches {target}'s CPU interface", costs["gic_sgi_delivery"])]


def around_handler(costs, gic_version: int, where: str, intid: str,
                   deactivate: bool = True) -> tuple[list[Step], list[Step]]:
    """The receiver's GIC driver around one interrupt's handler: (ack, EOI) before it,
    (DIR) after it.  `deactivate`: False for an interrupt forwarded to a vCPU (the
    guest's EOI through a HW list register deactivates it)."""
    before = [access(costs, gic_version, "ack", where, f"acknowledge {intid}"),
              access(costs, gic_version, "eoi", where, f"priority drop {intid}")]
    after = [access(costs, gic_version, "dir", where, f"deactivate {intid}")] if deactivate else []
    return before, after


def loop_end(costs, gic_version: int, where: str) -> Step:
    return access(costs, gic_version, "ack", where, f"{SPURIOUS}, nothing more pending: the loop ends")


def idle_wakeup_steps(costs, gic_version: int, where: str, entry: str, intid: str,
                      handler: list[Step], hw: str = HW, entry_sw: tuple[str, str] | None = None) -> list[Step]:
    """An idle pCPU (in WFI) taken out by an SGI: the IRQ exception, the IRQ entry code
    (`entry_sw`: (label, cost name), Linux's el1_irq by default), the driver loop."""
    what, key = entry_sw or ("IRQ entry: el1_irq, irq_enter, gic_handle_irq", "host_irq_entry")
    before, after = around_handler(costs, gic_version, where, intid)
    return [Step(hw, f"IRQ: exception entry ({entry}), out of WFI", costs["exc_entry_el2"]),
            Step(where, what, costs[key]), *before, *handler, *after, loop_end(costs, gic_version, where)]


XEN_IRQ_ENTRY = ("do_trap_irq -> gic_interrupt", "xen_irq_entry")


def place(led, steps, at: int) -> int:
    """Record steps another pCPU runs from cycle `at` (notes: not this pCPU's time); returns their end."""
    for st in steps:
        led.note(st.where, st.what, st.cycles, at=at)
        at += st.cycles
    return at


class PhysicalSgi:
    """A physical SGI on its way to a pCPU whose vCPU is running (a host event source of
    that vCPU, next to its soft timers): the IRQ exit happens when it arrives."""
    name = "physical SGI"
    kind = "sgi"
    level = False

    def __init__(self, vcpu):
        self.vcpu = vcpu
        self.arrive_at = NEVER

    def post(self, at: int) -> None:
        self.arrive_at = min(self.arrive_at, at)
        st = self.vcpu.cpu.st
        st.host_deadline = min(st.host_deadline, self.arrive_at)

    def deadline_cycles(self) -> int:
        return self.arrive_at

    def due(self, now: int) -> bool:
        return self.arrive_at <= now

    def take(self) -> None:
        self.arrive_at = NEVER

    def update_level(self) -> None:
        """Nothing to sync: the SGI is the host's own (IPI_RESCHEDULE / EVENT_CHECK)."""
