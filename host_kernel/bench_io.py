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
from engine.ledger import HIGHVISOR
from timers.generic_timer import NEVER

BACKEND = "back end"            # ledger location of steps run by the I/O back end

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


class KvmIoBackend:
    """KVM: ioeventfd -> a vhost-style worker on another pCPU; irqfd -> vGIC -> kick.
    The worker runs in parallel with the vCPU: its steps are recorded (notes) so a
    latency table shows them, but they do not stall the vCPU that notified."""

    def notify(self, vcpu) -> int:
        """The guest's notify reached the kernel: returns the cycle time the back end sees it."""
        led = vcpu.ledger
        led.charge_named(HIGHVISOR, "ioeventfd: eventfd_signal (wake the back-end thread)", "ioeventfd_signal")
        what, cycles = _named(led, "backend_wakeup", "back-end thread wakes on its pCPU and reads the notify")
        now = vcpu.cpu.cycles
        led.note(BACKEND, what, cycles, at=now)
        return now + cycles

    def _event_steps(self, vcpu) -> list[tuple[str, int]]:
        led = vcpu.ledger
        return [_named(led, "irqfd_inject", "irqfd: vGIC injects the SPI (kvm_vgic_inject_irq)"),
                _named(led, "kick_ipi", "kvm_vcpu_kick: physical IPI to the vCPU's pCPU")]

    def event_latency(self, vcpu) -> int:
        """Cycles from the back end sending an event to the IPI reaching the vCPU's pCPU."""
        return sum(c for _, c in self._event_steps(vcpu))

    def record_event(self, vcpu, at: int) -> None:
        """The steps of an event the back end sent at cycle `at`."""
        for what, cycles in self._event_steps(vcpu):
            vcpu.ledger.note(BACKEND, what, cycles, at=at)
            at += cycles


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
    emulated timers): a deadline for the host soft timer / wake-up, a level to sync."""
    name = "bench-io"

    def __init__(self, vcpu, dev: BenchIo):
        self.vcpu, self.dev = vcpu, dev
        self.level = False

    def deadline_cycles(self) -> int:
        return self.dev.deadline_cycles(self.vcpu)

    def update_level(self) -> None:
        self.dev.fire_if_due(self.vcpu)
