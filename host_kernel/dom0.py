"""The type-1 design's driver domain (dom0) on a pCPU of its own, as Xen
deployments pin it, and guest I/O through event channels, step by step as Xen
does it (xen/common/event_channel.c, xen/common/schedule.c, xen/arch/arm):

- a domU notify traps to Xen, which marks dom0's event-channel port pending
  (evtchn_send -> evtchn_port_set_pending), queues the event-channel PPI for
  dom0's vCPU (vcpu_mark_events_pending -> vgic_inject_irq) and, dom0's vCPU
  being blocked, wakes it (vcpu_kick -> vcpu_unblock -> vcpu_wake); the
  scheduler's run-queue tickle raises SCHEDULE_SOFTIRQ on dom0's pCPU: a
  physical SGI (host_kernel/ipi.py);
- dom0's pCPU, idle in WFI, takes the SGI (gic_interrupt, do_sgi),
  runs the schedule softirq, context-switches from the idle vCPU to dom0's
  (the world switch's register groups: dom0's state is what Xen restores),
  writes the upcall into a list register (gic_inject) and ERETs;
- dom0's Linux takes the vIRQ (GICV acknowledge, xen_evtchn_do_upcall, the
  port's handler wakes the back-end thread, GICV EOI), and switches to that
  thread, which reads the ring.

The other way, dom0's back end makes an EVTCHNOP_send hypercall; Xen marks the
domU's port pending, injects and kicks the running domU vCPU with a physical
SGI (its pCPU takes the IRQ exit: host_kernel/irq.py).

Steps on dom0's pCPU run in parallel with the guest when the guest does not
wait for them (a notify, an event it will take as an interrupt): they are
recorded as notes.  When the guest's vCPU waits (an MMIO read served by the
device model), they are charged to it, and its own pCPU idles meanwhile
(vcpu_put, then vcpu_load when the reply arrives)."""
from __future__ import annotations

from engine.ledger import Step
from el2 import world_switch as W
from host_kernel import ipi
from host_kernel.bench_io import BACKEND, RECEIVED

XEN_DOM0 = "Xen EL2 (dom0's pCPU)"
DOM0_HW = "hardware (dom0's pCPU)"
DOM0 = "dom0"
DOM0_USER = "dom0 user space"
XEN = "Xen EL2"
BACKEND_SIDE = (XEN_DOM0, DOM0_HW, DOM0, DOM0_USER)
EVTCHN_PPI = "PPI 31 (Xen event channel)"
EVENT_CHECK = "SGI 0 (GIC_SGI_EVENT_CHECK)"
# the guest's virtual CPU interface accesses: (acknowledge, EOI) cost names per GIC version
GICV = {2: ("GICV_IAR read", "gicv_mmio_read", "GICV_EOIR write", "gicv_mmio_write"),
        3: ("ICV_IAR1_EL1 read", "icv_sysreg_read", "ICV_EOIR1_EL1 write", "icv_sysreg_write")}


def evtchn_to(c, gic: int, where: str, port_of: str, vcpu_of: str) -> list[Step]:
    """Xen marks `port_of`'s event-channel port pending and queues its upcall."""
    return [Step(where, f"evtchn_send -> evtchn_port_set_pending: {port_of}'s port", c["xen_evtchn_send"]),
            Step(where, f"vcpu_mark_events_pending -> vgic_vcpu_inject_irq({vcpu_of}, {EVTCHN_PPI})",
                 c["xen_vgic_inject"])]


def xen_idle_to(ws, c, gic: int, hw: str, where: str, vcpu_of: str) -> list[Step]:
    """An idle pCPU of Xen's taken out of WFI by the tickle's SGI: the GIC loop, the schedule
    softirq, the context switch from the idle vCPU to `vcpu_of` (its register groups)."""
    gp = ws.cost[(W.GP, "restore", "guest")]
    steps = ipi.idle_wakeup_steps(c, gic, where, "Xen EL2 idle loop", EVENT_CHECK,
                                  [Step(where, "do_sgi: GIC_SGI_EVENT_CHECK, nothing to do "
                                               "(softirqs run on the way out)", c["xen_softirq"])],
                                  hw, ipi.XEN_IRQ_ENTRY)
    return [*steps,
            *ipi.receiver_steps(c, "type1", where, vcpu_of),
            *ws.load_steps(where),
            Step(where, f"restore {vcpu_of} GP registers", gp, W.GP, "restore")]


class Dom0Paths:
    """Step sequences of dom0's side, built once per pCPU from the profile and the
    world switch's declarations (dom0's vCPU state is what Xen restores to run it)."""

    def __init__(self, ws):
        c = ws.ledger.costs
        gic = 3 if ws.v3 else 2
        gp_save = ws.cost[(W.GP, "save", "guest")]
        ack, ack_key, eoi, eoi_key = GICV[gic]
        self.ws, self.gic = ws, gic
        # the domU's pCPU (in its trap): mark dom0's port, wake dom0's vCPU, tickle its pCPU
        write, delivery = ipi.send_steps(c, gic, XEN, "__runq_tickle -> smp_send_event_check_mask", "dom0's pCPU")
        self.notify_dom0 = [
            *evtchn_to(c, gic, XEN, "dom0", "dom0's vCPU"),
            Step(XEN, "vgic_vcpu_inject_irq -> vcpu_unblock -> vcpu_wake: dom0's vCPU onto a run queue "
                      "(xen/common/schedule.c)", c["xen_sched_wake"]),
            Step(XEN, "__runq_tickle: dom0's pCPU is idle, cpumask_raise_softirq(SCHEDULE_SOFTIRQ)",
                 c["xen_runq_tickle"]),
            write]
        # dom0's pCPU: from the SGI's arrival until dom0's Linux runs the event-channel handler
        self.dom0_upcall = [
            delivery,
            *xen_idle_to(ws, c, gic, DOM0_HW, XEN_DOM0, "dom0's vCPU"),
            Step(XEN_DOM0, f"leave_hypervisor_tail -> gic_inject: {EVTCHN_PPI} into an LR",
                 c["xen_lr_write"]),
            Step(DOM0_HW, "ERET to dom0", c["eret"]),
            Step(DOM0_HW, "vIRQ: exception entry to dom0's EL1 (VBAR_EL1 + 0x280)", c["exc_entry_el1"]),
            Step(DOM0, "dom0 IRQ entry: el1_irq, irq_enter, gic_handle_irq", c["host_irq_entry"]),
            Step(DOM0, f"dom0 gic_handle_irq: {ack}: acknowledge {EVTCHN_PPI}", c[ack_key]),
            Step(DOM0, f"xen_evtchn_do_upcall: scan the pending words, the back end's port handler: {RECEIVED}",
                 c["evtchn_upcall"]),
            Step(DOM0, "the port's handler: wake_up(the thread waiting on it) -> try_to_wake_up",
                 c["linux_ttwu"]),
            Step(DOM0, f"dom0: {eoi}: EOI {EVTCHN_PPI}", c[eoi_key]),
            Step(DOM0, f"dom0: {ack}: 1023, nothing more pending: the loop ends", c[ack_key]),
        ]
        self.dom0_backend = [
            Step(DOM0, "dom0 schedule(): idle -> the back-end thread (context switch)", c["sched_switch"]),
            Step(BACKEND, "back end (dom0): reads the ring, sees the request", c["backend_ring_read"])]
        # dom0's back end: EVTCHNOP_send for the domU's port, a kick of the domU's vCPU
        write, delivery = ipi.send_steps(c, gic, XEN_DOM0, "vcpu_kick -> smp_send_event_check_mask",
                                         "the domU vCPU's pCPU")
        self.send_event = [
            Step(BACKEND, "back end (dom0): notify_remote_via_evtchn -> HYPERVISOR_event_channel_op", 0),
            Step(DOM0_HW, "dom0 HVC (EVTCHNOP_send): exception entry to EL2", c["exc_entry_el2"]),
            Step(XEN_DOM0, "EL2 vector, save dom0 GP registers", c["el2_vector_guest"] + gp_save, W.GP, "save"),
            Step(XEN_DOM0, "do_trap_hypercall -> do_event_channel_op", c["xen_trap_dispatch"] + c["xen_hypercall"]),
            # its argument (evtchn_send_t) is in dom0's memory at a guest VA: copy_from_guest ->
            # gvirt_to_maddr translates it with AT S12E1R, PAR_EL1 saved, read and restored
            Step(XEN_DOM0, "copy_from_guest(evtchn_send_t): gvirt_to_maddr: AT S12E1R, PAR_EL1 read x2, write",
                 c["xen_at_translate"] + 2 * c["el1_sysreg_save"] + c["el1_sysreg_restore"]),
            *evtchn_to(c, gic, XEN_DOM0, "the domU", "the domU's vCPU"),
            write, delivery]
        # ... or, the domU's vCPU blocked (in WFI, or waiting on an ioreq): wake it and tickle
        # its idle pCPU (vgic_vcpu_inject_irq -> vcpu_unblock, xen/common/schedule.c)
        write, delivery = ipi.send_steps(c, gic, XEN_DOM0, "__runq_tickle -> smp_send_event_check_mask",
                                         "the domU vCPU's pCPU")
        self.wake_event = [
            *self.send_event[:-2],
            Step(XEN_DOM0, "vgic_vcpu_inject_irq -> vcpu_unblock -> vcpu_wake: the domU's vCPU onto a run queue",
                 c["xen_sched_wake"]),
            Step(XEN_DOM0, "__runq_tickle: the domU's pCPU is idle, cpumask_raise_softirq(SCHEDULE_SOFTIRQ)",
                 c["xen_runq_tickle"]),
            write, delivery]
        self.wake_domu = [*self.wake_event[1:], *xen_idle_to(ws, c, gic, "hardware", XEN, "the domU's vCPU")]

    @staticmethod
    def _charge(led, steps) -> None:
        led.charge_steps(sum(s.cycles for s in steps), tuple(steps))

    def ioreq_to_dom0(self, led) -> None:
        """domU's vCPU waits on an ioreq: it blocks (its pCPU idles), dom0 runs."""
        c = led.costs
        self._charge(led, [
            Step(XEN, "ioreq to dom0's device model: send_ioreq", 0),
            *self.notify_dom0,
            Step(XEN, "vcpu_block: the domU vCPU waits, its pCPU goes idle", c["xen_vcpu_block"]),
            *self.ws.put_steps(where=XEN),
            *self.dom0_upcall,
            Step(DOM0, "dom0 kernel: wake the device model in user space", c["exit_to_user"]),
        ])

    def ioreq_done(self, led) -> None:
        """The device model completes the ioreq: an event back, domU's vCPU wakes on its idle pCPU."""
        c = led.costs
        self._charge(led, [
            Step(DOM0_USER, "device model: complete the ioreq (ioctl into dom0's kernel)", c["kvm_run_ioctl"]),
            *self.wake_domu,
        ])


class Dom0IoBackend:
    """bench-io's back end in dom0: the notify is an event-channel send from Xen (on the
    guest's pCPU); dom0 is scheduled in on its own pCPU and its back-end thread sees it.
    The event back is dom0's EVTCHNOP_send hypercall and an SGI to the guest's pCPU."""

    def notify(self, vcpu) -> int:
        """Returns when dom0 has the notify: its upcall runs the port's handler (dom0, idle,
        woken through Xen's scheduler first); its back-end thread is woken after that."""
        led = vcpu.ledger
        paths = vcpu.lowvisor.dom0
        Dom0Paths._charge(led, paths.notify_dom0)
        steps = paths.dom0_upcall + paths.dom0_backend
        upto = next(i for i, st in enumerate(steps) if RECEIVED in st.what)
        received = vcpu.cpu.cycles + sum(st.cycles for st in steps[:upto + 1])
        ipi.place(led, steps, vcpu.cpu.cycles)
        return received

    @staticmethod
    def _event_steps(vcpu) -> list[Step]:
        """dom0's EVTCHNOP_send: a kick of the running domU vCPU, or the wake-up of a blocked one."""
        paths = vcpu.lowvisor.dom0
        return paths.wake_event if vcpu.asleep else paths.send_event

    def event_latency(self, vcpu) -> int:
        return sum(st.cycles for st in self._event_steps(vcpu))

    def record_event(self, vcpu, at: int) -> None:
        """The steps of an event dom0 sent at cycle `at`."""
        ipi.place(vcpu.ledger, self._event_steps(vcpu), at)

