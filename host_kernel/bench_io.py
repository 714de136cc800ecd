"""bench-io: an in-kernel test device with a back end, for the I/O latency
microbenchmarks (the virtio notify / interrupt pair of the ISCA'16 I/O
latency tests, reduced to one register each way).

    0x00 ID (RO)            0x41564230 "AVB0"       mmio_kernel reads it
    0x04 NOTIFY (WO)        a guest notify: the back end records when it sees it
    0x08/0x0C SEEN (RO)     virtual count at which the back end saw the last notify
    0x10/0x14 EVENT_AT (WO) writing the high word arms an event at this virtual count
    0x18/0x1C SENT (RO)     virtual count at which the back end sent the last event
    0x20 ACK (WO)           the guest acknowledges: the interrupt line drops
    0x24 DOORBELL (WO)      bound to an ioeventfd nobody waits on (KVM_IOEVENTFD, as a
                            VMM binds a virtqueue's notify address): the host kernel
                            completes the write itself, no device model runs (mmio_kernel)

The back end is not guest code: it is host software (a vhost-style kernel
thread woken by an ioeventfd, raising the interrupt through an irqfd; under
the type-1 design a back end in dom0).  Where it runs and what it pays
belongs to the hypervisor design: `IoBackend` objects charge those steps.
"""
from __future__ import annotations

from engine import layout
from engine.ledger import HIGHVISOR, HW, Step
from host_kernel import ipi
from timers.generic_timer import NEVER

BACKEND = "back end"            # ledger location of steps run by the I/O back end
BACKEND_KERNEL = "host kernel (back end's pCPU)"
BACKEND_HW = "hardware (back end's pCPU)"
BACKEND_PCPU = (BACKEND, BACKEND_KERNEL, BACKEND_HW)   # everything on the back end's own pCPU

# The step at whose end the back end has received the guest's notify (ISCA'16 Table I, I/O
# latency out: "the virtual I/O device receiving the signal"): KVM's in-kernel ioeventfd
# signalled on the vCPU's own exit path; Xen's dom0 taking the event channel's virtual
# interrupt (its upcall runs the port's handler).  What follows (waking the worker thread)
# goes on in parallel and is not part of the figure.
RECEIVED = "the back end has the notify"

BENCH_IO_ID = 0x41564230
REG_ID, REG_NOTIFY, REG_SEEN, REG_EVENT_AT, REG_SENT, REG_ACK = 0x00, 0x04, 0x08, 0x10, 0x18, 0x20
REG_DOORBELL = 0x24
# What the kernel's MMIO path runs for an access (cost name, step label): the doorbell is an
# ioeventfd (virt/kvm/eventfd.c ioeventfd_write -> eventfd_signal), the rest the device model.
DOORBELL_PATH = ("ioeventfd_write", "ioeventfd_write: eventfd_signal, no waiter (no device model)")
DEVICE_PATH = ("kernel_mmio_device", "in-kernel device bench-io")


def _named(led, key: str, what: str) -> tuple[str, int]:
    """A named cost as the ledger's design sees it (type 1: dom0's paths, not KVM's)."""
    if key in led.key_map:
        key, what = led.key_map[key]
    return what, led.costs[key]


def linux_wakes_thread(c, gic: int, where: str, hw: str, entry: str, thread: str, intid: str,
                       handler: str, then: str, design) -> list[Step]:
    """Linux on an idle (v)CPU woken by an interrupt to run a kernel thread: the IRQ out of
    WFI and the GIC driver's loop around `handler` (host_kernel/ipi.py), then schedule()
    switches from the idle task to the thread, which does `then`."""
    steps = ipi.idle_wakeup_steps(c, gic, where, entry, intid, [Step(where, handler, c["host_event_handler"])], hw,
                                  split_eoi=ipi.SPLIT_EOI[design.name], host_el=2 if design.host_at_el2 else 1)
    return [*steps, Step(where, f"schedule(): idle -> {thread} (context switch)", c["sched_switch"]),
            Step(BACKEND, then, c["backend_ring_read"])]


class KvmIoBackend:
    """KVM: an ioeventfd wakes a vhost-style worker thread on another (idle) pCPU; its
    irqfd injects the SPI and kicks the vCPU.  Both directions cross pCPUs by a physical
    SGI (host_kernel/ipi.py).  The worker runs in parallel with the vCPU: its steps are
    recorded (notes) so a latency table shows them, but they do not stall the vCPU."""

    def notify(self, vcpu) -> int:
        """The guest's notify reached the kernel (kvm_io_bus_write -> ioeventfd_write):
        returns the cycle time the device has it - once the ioeventfd is signalled, on the
        vCPU's own exit path.  The signal then wakes the idle vhost worker on its pCPU."""
        led, c = vcpu.ledger, vcpu.ledger.costs
        gic = vcpu.vm.host.gic_version
        led.charge_named(HIGHVISOR, "ioeventfd_write: eventfd_signal -> vhost_poll_wakeup "
                                    f"(virt/kvm/eventfd.c): {RECEIVED}", "ioeventfd_signal")
        received = vcpu.cpu.cycles
        led.charge_named(HIGHVISOR, "wake_up_process(vhost worker) -> try_to_wake_up: its pCPU is idle",
                         "linux_ttwu")
        write, delivery = ipi.send_steps(c, gic, led.where_map.get(HIGHVISOR, HIGHVISOR),
                                         "ttwu_queue -> smp_send_reschedule", "the back end's pCPU")
        led.charge_steps(write.cycles, (write,))
        entry = "host EL2" if vcpu.vm.host.design.host_at_el2 else "host EL1"
        steps = [delivery, *linux_wakes_thread(
            c, gic, BACKEND_KERNEL, BACKEND_HW, entry, "the vhost worker", "SGI 0 (IPI_RESCHEDULE)",
            "handle_IPI(IPI_RESCHEDULE): scheduler_ipi, the worker is runnable",
            "vhost worker: handle_kick reads the ring, sees the request", vcpu.vm.host.design)]
        ipi.place(led, steps, vcpu.cpu.cycles)
        return received

    def _event_steps(self, vcpu) -> list[Step]:
        """The back end's event: the irqfd injects the SPI and kvm_vcpu_kick reaches the vCPU -
        running: an SGI makes it exit; asleep in WFI (kvm_vcpu_block): kvm_vcpu_wake_up wakes
        its thread, whose idle pCPU try_to_wake_up's SGI takes out of WFI."""
        c, gic = vcpu.ledger.costs, vcpu.vm.host.gic_version
        design = vcpu.vm.host.design.name
        wake = [Step(BACKEND_KERNEL, what.format(n=vcpu.index), c[key])
                for what, key in ipi.WAKE_SENDER[design]] if vcpu.asleep else []
        write, delivery = ipi.send_steps(c, gic, BACKEND_KERNEL, (ipi.WAKE if vcpu.asleep else ipi.KICK)[design],
                                         "the vCPU's pCPU")
        # irqfd_wakeup runs under the eventfd's wait-queue lock: an SPI is not injected there
        # (Linux 4.1's ARM irqfd injects only MSIs in place; kvm_arch_set_irq_inatomic, later,
        # returns -EWOULDBLOCK for an SPI) but deferred to a kworker: schedule_work on this CPU
        # wakes it, and it runs once the vhost worker gives the CPU up (virt/kvm/eventfd.c).
        return [Step(BACKEND, "vhost_signal: eventfd_signal(call) -> irqfd_wakeup", c["ioeventfd_signal"]),
                Step(BACKEND_KERNEL, "irqfd_wakeup: an SPI, no in-atomic injection -> schedule_work(irqfd->inject)"
                                     " -> try_to_wake_up(kworker), this CPU", c["linux_ttwu"]),
                Step(BACKEND_KERNEL, "schedule(): the vhost worker -> the kworker (context switch)", c["sched_switch"]),
                Step(BACKEND_KERNEL, "irqfd_inject -> kvm_set_irq(1), kvm_set_irq(0) -> kvm_vgic_inject_irq: "
                                     "the SPI pending for the vCPU, vgic_kick_vcpus (virt/kvm/eventfd.c)",
                     c["irqfd_inject"]),
                *wake, write, delivery]

    def event_latency(self, vcpu) -> int:
        """Cycles from the back end sending an event to its SGI reaching the vCPU's pCPU."""
        return sum(st.cycles for st in self._event_steps(vcpu))

    def record_event(self, vcpu, at: int) -> None:
        """The steps of an event the back end sent at cycle `at`."""
        ipi.place(vcpu.ledger, self._event_steps(vcpu), at)


class BenchIo:
    name = "bench-io"

    def __init__(self, vm, backend, intid: int = layout.BENCH_IO_INTID):
        self.vm, self.backend, self.intid = vm, backend, intid
        self.seen = 0               # virtual count of the last notify seen by the back end
        self.sent = 0               # virtual count of the last event sent
        self.event_at: int | None = None
        self._event_lo = 0
        self.doorbells = 0          # the doorbell ioeventfd's eventfd count
        self.unhandled: list = []

    def emulation(self, offset: int, is_write: bool) -> tuple[str, str]:
        """(cost name, label) of what the kernel runs for this access."""
        return DOORBELL_PATH if is_write and offset == REG_DOORBELL else DEVICE_PATH

    def _count(self, vcpu, cycles: int) -> int:
        return self.vm.host.counter.ticks(cycles) - vcpu.ctx.timer.cntvoff

    # --- the event: a host event source on the target vCPU (like a soft timer) ----------
    def target(self) -> int:
        return self.vm.vgic.spi_target(self.intid)

    def deadline_cycles(self, vcpu) -> int:
        """When the back end's IPI for the armed event reaches this vCPU's pCPU."""
        if self.event_at is None or vcpu.index != self.target():
            return NEVER
        at = self.vm.host.counter.cycles_for(self.event_at + vcpu.ctx.timer.cntvoff)
        return at + self.backend.event_latency(vcpu)

    def fire_if_due(self, vcpu) -> bool:
        due = self.deadline_cycles(vcpu)
        if due > vcpu.cpu.cycles:
            return False
        self.sent, self.event_at = self.event_at, None
        self.backend.record_event(vcpu, due - self.backend.event_latency(vcpu))
        self.vm.vgic.set_level(self.intid, True)
        return True

    # --- registers ------------------------------------------------------------------
    def read(self, vcpu: int, offset: int, size: int) -> int:
        regs = {REG_ID: BENCH_IO_ID, REG_SEEN: self.seen & 0xFFFF_FFFF, REG_SEEN + 4: self.seen >> 32,
                REG_SENT: self.sent & 0xFFFF_FFFF, REG_SENT + 4: self.sent >> 32}
        if size != 4 or offset not in regs:
            self.unhandled.append((offset, False))
            return 0
        return regs[offset]

    def write(self, vcpu: int, offset: int, size: int, value: int) -> None:
        v = self.vm.vcpus[vcpu]
        if size != 4:
            self.unhandled.append((offset, True))
        elif offset == REG_NOTIFY:
            self.seen = self._count(v, self.backend.notify(v))
        elif offset == REG_EVENT_AT:
            self._event_lo = value
        elif offset == REG_EVENT_AT + 4:
            self.event_at = value << 32 | self._event_lo
        elif offset == REG_ACK:
            self.vm.vgic.set_level(self.intid, False)
        elif offset == REG_DOORBELL:
            self.doorbells += 1
        else:
            self.unhandled.append((offset, True))

    def take_unhandled(self) -> list:
        out, self.unhandled = self.unhandled, []
        return out


class BenchIoEvents:
    """The device's back-end event as one of a vCPU's host event sources (next to the
    emulated timers): a deadline for the host soft timer / wake-up, a level to sync.  The
    event reaches the vCPU's pCPU as the back end's physical SGI (host_kernel/ipi.py)."""
    name = "bench-io"
    kind = "sgi"

    def __init__(self, vcpu, dev: BenchIo):
        self.vcpu, self.dev = vcpu, dev
        self.level = False

    def deadline_cycles(self) -> int:
        return self.dev.deadline_cycles(self.vcpu)

    fired_at: int | None = None     # when the last event's SGI reached the pCPU

    def update_level(self) -> None:
        due = self.dev.deadline_cycles(self.vcpu)
        if self.dev.fire_if_due(self.vcpu):
            self.fired_at = due
