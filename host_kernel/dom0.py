"""The type-1 design's driver domain (dom0) on a pCPU of its own, as Xen
deployments pin it: guest I/O reaches its back end or device model through an
event channel, which makes Xen on dom0's pCPU switch from idle to dom0 - a VM
switch whose register groups are the world switch's own declarations - and
dom0 answers with a hypercall that sends an event back.

Steps on dom0's pCPU run in parallel with the guest when the guest does not
wait for them (a notify, an event it will take as an interrupt): they are
recorded as notes.  When the guest's vCPU waits (an MMIO read served by the
device model), they are charged to it, and its own pCPU idles meanwhile
(vcpu_put, then vcpu_load when the reply arrives)."""
from __future__ import annotations

from engine.ledger import HW, Step
from el2 import world_switch as W

XEN_DOM0 = "Xen EL2 (dom0's pCPU)"
DOM0 = "dom0"
DOM0_USER = "dom0 user space"
XEN = "Xen EL2"
BACKEND_SIDE = (XEN_DOM0, DOM0, DOM0_USER)


class Dom0Paths:
    """Step sequences of dom0's side, built once per pCPU from the profile and the
    world switch's declarations (dom0's vCPU state is what Xen restores to run it)."""

    def __init__(self, ws):
        c = ws.ledger.costs
        gp_save, gp_restore = ws.cost[(W.GP, "save", "guest")], ws.cost[(W.GP, "restore", "guest")]
        self.ws = ws
        self.schedule_in = [
            Step(XEN_DOM0, "IPI: do_trap_irq for dom0's event channel", c["xen_irq_entry"]),
            Step(XEN_DOM0, "vcpu_wake + schedule(): idle -> dom0", c["xen_vcpu_wake"]),
            *ws.load_steps(XEN_DOM0),
            Step(XEN_DOM0, "restore dom0 GP registers", gp_restore, W.GP, "restore"),
            Step(XEN_DOM0, "ERET to dom0", c["eret"]),
            Step(DOM0, "dom0 kernel: event channel upcall, the back end runs", c["xen_dom0_upcall"]),
        ]
        self.send_event = [
            Step(DOM0, "dom0 HVC (EVTCHNOP_send): exception entry to EL2", c["exc_entry_el2"]),
            Step(XEN_DOM0, "EL2 vector, save dom0 GP registers", c["el2_vector_guest"] + gp_save, W.GP, "save"),
            Step(XEN_DOM0, "do_trap_hypercall: mark the domU event pending, vgic_inject_irq",
                 c["xen_trap_dispatch"] + c["xen_hypercall"]),
            Step(XEN_DOM0, "IPI to the domU vCPU's pCPU", c["xen_ipi"]),
        ]

    @staticmethod
    def _charge(led, steps) -> None:
        led.charge_steps(sum(s.cycles for s in steps), tuple(steps))

    def ioreq_to_dom0(self, led) -> None:
        """domU's vCPU waits on an ioreq: it blocks (its pCPU idles), dom0 runs."""
        c = led.costs
        self._charge(led, [
            Step(XEN, "ioreq to dom0: evtchn_send, IPI to dom0's pCPU", c["xen_evtchn_send"]),
            Step(XEN, "vcpu_block: the domU vCPU waits, its pCPU goes idle", c["xen_vcpu_block"]),
            *self.ws.put_steps(where=XEN),
            *self.schedule_in,
            Step(DOM0, "dom0 kernel: wake the device model in user space", c["exit_to_user"]),
        ])

    def ioreq_done(self, led) -> None:
        """The device model completes the ioreq: an event back, domU's vCPU wakes."""
        c = led.costs
        self._charge(led, [
            Step(DOM0_USER, "device model: complete the ioreq (ioctl into dom0's kernel)", c["kvm_run_ioctl"]),
            *self.send_event,
            Step(XEN, "IPI: do_trap_irq on the domU vCPU's pCPU", c["xen_irq_entry"]),
            Step(XEN, "vcpu_wake + schedule(): idle -> domU", c["xen_vcpu_wake"]),
            *self.ws.load_steps(XEN),
        ])


class Dom0IoBackend:
    """bench-io's back end in dom0: the notify is an event-channel send from Xen (on the
    guest's pCPU); dom0 is scheduled in on its own pCPU and sees it.  The event back is
    dom0's EVTCHNOP_send hypercall and an IPI to the guest's pCPU."""

    def notify(self, vcpu) -> int:
        led = vcpu.ledger
        led.charge_named(XEN, "event channel: notify dom0's back end", "xen_evtchn_send")
        at = vcpu.cpu.cycles
        for st in vcpu.lowvisor.dom0.schedule_in:
            led.note(st.where, st.what, st.cycles, at=at)
            at += st.cycles
        return at

    def event_latency(self, vcpu) -> int:
        return sum(st.cycles for st in vcpu.lowvisor.dom0.send_event)

    def record_event(self, vcpu, at: int) -> None:
        """The steps of an event dom0 sent at cycle `at`."""
        for st in vcpu.lowvisor.dom0.send_event:
            vcpu.ledger.note(st.where, st.what, st.cycles, at=at)
            at += st.cycles
