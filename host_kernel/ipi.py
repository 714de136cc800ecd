"""Physical interrupts between pCPUs (GIC software-generated interrupts), as the
hardware does them (IHI 0048B 4.3.15 GICD_SGIR; IHI 0069 12.2.22 ICC_SGI1R_EL1):

- the sender writes the distributor's SGI register: GICv2 GICD_SGIR, a posted
  MMIO write (the core does not wait for it); GICv3 ICC_SGI1R_EL1, a system
  register write;
- the distributor forwards the SGI to the target's CPU interface;
- the target takes an IRQ exception and runs its GIC driver's loop (Linux
  gic_handle_irq, Xen gic_interrupt / do_sgi): acknowledge (an IAR read:
  a GIC register read, which stalls), priority drop (EOIR), the handler,
  deactivate (DIR: EOImode 1, as Linux at EL2 and Xen run the GIC), then IAR
  once more, which reads 1023 (nothing pending) and ends the loop.

Every access is charged at the profile's primitive for it (GICC/GICD MMIO on
GICv2, ICC_* system registers on GICv3).  The same steps serve every receiver:
a pCPU running a guest (its IRQ exit; the lowvisor's exit path around them), an
idle host pCPU woken for a back-end thread, dom0's pCPU under Xen.

The era is the one the profile's world switch is calibrated for (ISCA'16): Linux
4.0 KVM/ARM on the host, Xen 4.5.  Linux 4.0's GIC drivers (irq-gic.c,
irq-gic-v3.c gic_handle_irq) run EOImode 0: the EOIR write drops the priority
and deactivates, there is no DIR write (split EOI/deactivate for a host at HYP
came with Linux 4.3); a VHE host is a later kernel (4.6+), which writes DIR, as
Xen's do_sgi always does (eoi_irq, then deactivate_irq).  An IRQ's handler
returns to what it interrupted (Linux kernel_exit, Xen `exit hyp=1`: the frame's
registers, then ERET); on an idle Linux CPU irq_enter and the idle loop's exit
run the NO_HZ_IDLE tick code (kernel/time/tick-sched.c).

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
WAKE_SENDER = {       # Linux 4.0 kvm_vcpu_kick: waitqueue_active -> wake_up_interruptible(&vcpu->wq)
    "nvhe": (("kvm_vcpu_kick -> wake_up_interruptible(vcpu->wq) -> try_to_wake_up(vCPU{n}'s thread): its "
              "pCPU is idle", "linux_ttwu"),),
    "vhe": (("kvm_vcpu_kick -> kvm_vcpu_wake_up -> try_to_wake_up(vCPU{n}'s thread): its pCPU is idle",
             "linux_ttwu"),),
    # Xen 4.5: vgic_vcpu_inject_irq -> vcpu_unblock -> vcpu_wake -> csched_vcpu_wake -> __runq_tickle
    "type1": (("vgic_vcpu_inject_irq -> vcpu_unblock -> vcpu_wake: vCPU{n} onto a run queue (xen/common/schedule.c)",
               "xen_sched_wake"),
              ("__runq_tickle: vCPU{n}'s pCPU is idle, cpumask_raise_softirq(SCHEDULE_SOFTIRQ)", "xen_runq_tickle")),
}
# ... for a vCPU whose WFx exit decided to block but whose pCPU has not gone idle yet (the kick
# comes between kvm_vcpu_check_block and schedule()'s switch): its thread is still current on
# its CPU, so the wake-up only makes it runnable again and no IPI is sent - Linux
# try_to_wake_up -> ttwu_remote (p->on_rq), kvm_vcpu_kick sends none outside guest mode
# (kvm_arch_vcpu_should_kick); Xen vcpu_wake of a running unit ("unit_wake_running"), no
# tickle.  Its schedule() then picks it again: no context switch, no wake-up from idle.
WAKE_NOT_ASLEEP = {
    "nvhe": ("kvm_vcpu_kick -> wake_up_interruptible(vcpu->wq) -> try_to_wake_up(vCPU{n}'s thread): still "
             "on its CPU, not asleep yet: TASK_RUNNING again, no IPI", "linux_ttwu"),
    "type1": ("vcpu_kick -> vcpu_unblock -> vcpu_wake: vCPU{n} still running, not descheduled yet: "
              "no tickle", "xen_sched_wake"),
}
WAKE_NOT_ASLEEP["vhe"] = WAKE_NOT_ASLEEP["nvhe"]
NOT_ASLEEP = "schedule(): woken before it slept, no context switch"
WAKE = {"nvhe": "ttwu_queue -> smp_send_reschedule", "vhe": "ttwu_queue -> smp_send_reschedule",
        "type1": "__runq_tickle -> smp_send_event_check_mask"}
# the receiver, idle: out of WFI by the SGI (idle_wakeup_steps), then its scheduler switches to
# the woken vCPU.  Linux 4.0: schedule_preempt_disabled -> __schedule -> context_switch(idle ->
# the vCPU thread): the idle task borrowed that thread's mm (the last to run), so switch_mm
# finds prev == next and writes no TTBR0; switch_to's fpsimd_thread_switch saves nothing for
# the idle task, tls_thread_switch and cpu_switch_to, finish_task_switch ->
# kvm_sched_in -> kvm_arch_vcpu_load (4.0: vcpu->cpu, the running-vCPU pointer) are in the
# sched_switch estimate; the thread returns into kvm_vcpu_block.  Xen 4.5: do_softirq ->
# schedule() (csched_schedule) sets the slice timer (set_timer(s_timer): TIMER_SOFTIRQ ->
# reprogram_timer, CNTHP_CVAL_EL2 and CNTHP_CTL_EL2), then context_switch -> ctxt_switch_to.
WAKE_RECEIVER = {
    "nvhe": (("schedule(): idle -> {who}'s thread (context switch; switch_mm: same mm, no TTBR0 write)",
              "sched_switch"),
             ("kvm_vcpu_block returns: kvm_vcpu_check_block, finish_wait", "kvm_block_return")),
    "type1": (("do_softirq(SCHEDULE_SOFTIRQ) -> schedule(): the scheduler picks {who} "
               "(xen/common/schedule.c)", "xen_schedule"),
              ("schedule() -> set_timer(s_timer): TIMER_SOFTIRQ -> reprogram_timer", "xen_set_timer"),
              ("reprogram_timer: CNTHP_CVAL_EL2, CNTHP_CTL_EL2 writes", ("el2_sysreg_write", 2)),
              ("context_switch(idle -> {who}): ctxt_switch_to", "xen_context_switch")),
}
WAKE_RECEIVER["vhe"] = WAKE_RECEIVER["nvhe"]


def receiver_steps(costs, design: str, where: str, who: str) -> list[Step]:
    """The woken pCPU's scheduler switching to `who` (WAKE_RECEIVER)."""
    return [Step(where, what.format(who=who), cost_of(costs, key)) for what, key in WAKE_RECEIVER[design]]
KICK_SGI = {"nvhe": "SGI 0 (IPI_RESCHEDULE)", "vhe": "SGI 0 (IPI_RESCHEDULE)", "type1": "SGI 0 (GIC_SGI_EVENT_CHECK)"}
KEYS = ("gicd_mmio_write", "gic_sgi_delivery", "icc_sysreg_read", "icc_sysreg_write", "nohz_irq_enter",
        "nohz_idle_exit", "kvm_block_return", "xen_set_timer")
# Does the host's GIC driver split EOI and deactivate (EOImode 1: a DIR write after the handler)?
SPLIT_EOI = {"nvhe": False, "vhe": True, "type1": True}
SPURIOUS = 1023
GIC = "GIC distributor"          # where an SGI travels: on neither pCPU's clock


def access(costs, gic_version: int, what: str, where: str, why: str) -> Step:
    reg, key = ACCESS[gic_version][what]
    return Step(where, f"{reg}: {why}", costs[key])


def cost_of(costs, key) -> int:
    """A cost name, or (name, count): that primitive `count` times."""
    name, n = (key, 1) if isinstance(key, str) else key
    return costs[name] * n


def send_steps(costs, gic_version: int, where: str, caller: str, target: str) -> list[Step]:
    """The sender's side: the SGI register write (charged to the sender), then the
    distributor's delivery to the target (in parallel with the sender, not charged to it)."""
    return [access(costs, gic_version, "sgi", where, f"{caller}, SGI to {target}"),
            Step(GIC, f"GIC distributor: the SGI reaches {target}'s CPU interface", costs["gic_sgi_delivery"])]


def around_handler(costs, gic_version: int, where: str, intid: str,
                   deactivate: bool = True) -> tuple[list[Step], list[Step]]:
    """The receiver's GIC driver around one interrupt's handler: (ack, EOI) before it,
    (DIR) after it.  `deactivate`: False for an interrupt forwarded to a vCPU (the
    guest's EOI through a HW list register deactivates it) and for a driver in EOImode 0
    (its EOIR write deactivates too)."""
    before = [access(costs, gic_version, "ack", where, f"acknowledge {intid}"),
              access(costs, gic_version, "eoi", where, f"priority drop {intid}")]
    after = [access(costs, gic_version, "dir", where, f"deactivate {intid}")] if deactivate else []
    return before, after


def loop_end(costs, gic_version: int, where: str) -> Step:
    return access(costs, gic_version, "ack", where, f"{SPURIOUS}, nothing more pending: the loop ends")


# The IRQ handler's return to what it interrupted: its frame's registers, then ERET.  Linux
# kernel_exit (arch/arm64/kernel/entry.S): x0-x29 as 15 LDP pairs, LR, SP_EL0, ELR_EL1, SPSR_EL1;
# Xen `exit hyp=1` (xen/arch/arm/arm64/entry.S): x0-x29, LR, ELR_EL2, SPSR_EL2.
IRQ_RETURN = {"linux": ("kernel_exit: restore pt_regs (x0-x30, SP_EL0, ELR_EL1, SPSR_EL1)", 15, 4),
              "xen": ("exit hyp=1: restore the hypervisor frame (x0-x30, ELR_EL2, SPSR_EL2)", 15, 3)}


def irq_return_steps(costs, where: str, hw: str, os: str, to: str) -> list[Step]:
    what, pairs, specials = IRQ_RETURN[os]
    return [Step(where, f"IRQ return, {what}", pairs * costs["gp_pair_load"] + specials * costs["special_reg_restore"]),
            Step(hw, f"ERET to {to}", costs["eret"])]


def idle_wakeup_steps(costs, gic_version: int, where: str, entry: str, intid: str,
                      handler: list[Step], hw: str = HW, entry_sw: tuple[str, str] | None = None,
                      split_eoi: bool = True, host_el: int = 1) -> list[Step]:
    """An idle pCPU (in WFI, IRQs masked: Linux 4.0 arch_cpu_idle, Xen 4.5 idle_loop) taken out
    by an SGI when it unmasks them: the IRQ exception, the IRQ entry code (`entry_sw`: (label,
    cost name); Linux's el1_irq by default, with NO_HZ_IDLE's tick_nohz_irq_enter), the driver
    loop, the return to the idle loop, and (Linux) tick_nohz_idle_exit restarting the tick."""
    linux = entry_sw is None
    what, key = entry_sw or ("IRQ entry: el1_irq, irq_enter, gic_handle_irq", "host_irq_entry")
    before, after = around_handler(costs, gic_version, where, intid, split_eoi)
    exc = "exc_entry_el1" if linux and host_el == 1 else "exc_entry_el2"
    steps = [Step(hw, f"IRQ: exception entry ({entry}), out of WFI", costs[exc]), Step(where, what, costs[key])]
    if linux:
        steps.append(Step(where, "irq_enter -> tick_irq_enter -> tick_nohz_irq_enter (the CPU was idle)",
                          costs["nohz_irq_enter"]))
    steps += [*before, *handler, *after, loop_end(costs, gic_version, where),
              *irq_return_steps(costs, where, hw, "linux" if linux else "xen", "the idle loop")]
    if linux:
        steps += [Step(where, "cpu_idle_loop -> tick_nohz_idle_exit: restart the sched tick", costs["nohz_idle_exit"]),
                  Step(where, "clockevents_program_event -> arch_timer_set_next_event: CNTP_CTL_EL0 read, "
                              "CNTP_TVAL_EL0 and CNTP_CTL_EL0 writes",
                       costs["el1_sysreg_save"] + 2 * costs["el1_sysreg_restore"])]
    return steps


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
