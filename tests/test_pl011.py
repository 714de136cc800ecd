"""PL011 (ARM DDI 0183G) as Linux's amba-pl011 uses it: ID registers, FIFOs, flags,
interrupts, the receive line's virtual timing and when it delivers, and its
interrupt level reaching the vGIC the way KVM_IRQ_LINE does."""
from __future__ import annotations

import pytest

from armvirt import paths
from armvirt.console import Console
from armvirt.devices import pl011 as P
from armvirt.devices.pl011 import DeviceError, Pl011
from armvirt.machine import Machine, MachineConfig
from armvirt.serial import ScriptInput
from engine import layout

CPU_HZ = 2_400_000_000
NEVER = 2**64 - 1


class Levels(list):
    def __call__(self, level):
        self.append(level)


def uart(data: bytes | None = None, fen: bool = True) -> tuple[Pl011, Levels, Console]:
    con, lv = Console(echo=False), Levels()
    u = Pl011(con, irq=lv, cpu_hz=CPU_HZ, rx=None if data is None else ScriptInput(data))
    if fen:
        u.write(P.UARTLCR_H, 4, 0x70)           # 8 bits, FIFOs on (Linux's 8N1)
    return u, lv, con


def eq(got, want, what):
    assert got == want, f"{what}: expected {want!r}, got {got!r}"


def test_identification_and_reset_values():
    u, _, _ = uart(fen=False)
    eq([u.read(o, 4) for o in range(0xFE0, 0x1000, 4)], [0x11, 0x10, 0x34, 0x00, 0x0D, 0xF0, 0x05, 0xB1],
       "PeriphID (r1p5, revision 3) and PrimeCell ID")
    eq({o: u.read(o, 4) for o in (P.UARTFR, P.UARTCR, P.UARTIFLS, P.UARTIMSC, P.UARTRIS, P.UARTLCR_H)},
       {P.UARTFR: 0x90, P.UARTCR: 0x300, P.UARTIFLS: 0x12, P.UARTIMSC: 0, P.UARTRIS: 0, P.UARTLCR_H: 0},
       "reset values (FR = TXFE|RXFE)")


def test_transmit_interrupt_through_mask_and_clear():
    u, lv, con = uart()
    u.write(P.UARTDR, 4, ord("A"))
    eq((con._partial.decode(), u.read(P.UARTRIS, 4) & P.INT_TX, u.read(P.UARTMIS, 4), lv),
       ("A", P.INT_TX, 0, []), "written char out, TXRIS set, masked: no interrupt")
    u.write(P.UARTIMSC, 4, P.INT_TX)
    eq((u.read(P.UARTMIS, 4), lv), (P.INT_TX, [True]), "TXIM unmasked: MIS and the line rise")
    u.write(P.UARTICR, 4, P.INT_TX)
    eq((u.read(P.UARTRIS, 4), lv), (0, [True, False]), "ICR clears TXRIS and drops the line")
    eq(u.read(P.UARTFR, 4) & (P.FR_TXFE | P.FR_TXFF | P.FR_BUSY), P.FR_TXFE, "TX always empty, never busy")


def test_line_waits_until_the_guest_listens_and_idles():
    u, lv, _ = uart(b"ls\n")
    eq(u.deadline(idle_since=1000), NEVER, "RX interrupts masked: nothing is sent to an idle guest")
    u.write(P.UARTIMSC, 4, P.INT_RX | P.INT_RT)
    eq(u.deadline(idle_since=None), NEVER, "listening but busy (a vCPU runs): nothing is sent")
    quiet = int(CPU_HZ * P.QUIET_S)
    eq(u.deadline(idle_since=1000), quiet, "listening and idle: the line starts once output was quiet QUIET_S")
    eq(u.deadline(idle_since=quiet + 5), quiet + 5, "... or at once when it has been")
    eq(u.rx.reads, 0, "deciding when never reads the input")


def test_one_line_per_wait_at_the_line_rate_then_timeout():
    u, lv, _ = uart(b"ls\nnext\n")
    u.write(P.UARTIMSC, 4, P.INT_RX | P.INT_RT)
    ch = u.char_cycles
    eq(ch, 10 * 16 * P.DEFAULT_DIV64 * CPU_HZ // (64 * P.UARTCLK_HZ), "8N1 at 115200: 10 bit periods")
    t0 = int(CPU_HZ * P.QUIET_S)
    t = u.deadline(1000)
    for want in (t0, t0 + ch, t0 + 2 * ch):
        eq(t, want, "character arrival time")
        u.event(t)
        t = u.deadline(None)                 # the guest stays busy or idle: the line goes on
    eq(list(u.fifo), list(b"ls\n"), "the whole first line, and no more")
    rt = t0 + 2 * ch + u.timeout_cycles
    eq(t, rt, "after the newline only the RX timeout is pending (32 bit periods)")
    eq((u.read(P.UARTRIS, 4) & P.INT_RT, lv), (0, []), "no timeout yet")
    u.event(rt)
    eq((u.read(P.UARTMIS, 4), lv), (P.INT_RT, [True]), "RTRIS, the line rises (below the RX trigger)")
    eq([u.read(P.UARTDR, 4) for _ in range(3)], list(b"ls\n"), "read in order")
    eq((u.read(P.UARTRIS, 4), lv, u.read(P.UARTFR, 4) & P.FR_RXFE), (0, [True, False], P.FR_RXFE),
       "FIFO empty: RTRIS cleared, line low, RXFE")
    eq(u.deadline(None), NEVER, "the next line waits for the next wait")
    eq(u.deadline(t0 + 5_000_000), t0 + 5_000_000, "idle again: the next line starts")


def test_rx_level_interrupt_at_the_trigger_and_backpressure():
    u, lv, _ = uart(b"x" * 40 + b"\n")
    u.write(P.UARTIMSC, 4, P.INT_RX)
    t, n = u.deadline(0), 0
    while t != NEVER and n < 100:
        u.event(t)
        if len(u.fifo) == 15:
            eq(u.read(P.UARTRIS, 4) & P.INT_RX, 0, "below the 1/2 trigger (16 of 32)")
        t, n = u.deadline(None), n + 1
    eq((len(u.fifo), u.read(P.UARTFR, 4) & P.FR_RXFF, lv), (32, P.FR_RXFF, [True]),
       "FIFO full: RXFF, the line holds off (no overrun); RXRIS raised at 16")
    full_at = u.line_free
    u.read(P.UARTDR, 4, full_at + 12345)
    eq(u.deadline(None), full_at + 12345, "room again: the line resumes from the read")
    for _ in range(16):
        u.read(P.UARTDR, 4, full_at + 20000)
    eq((len(u.fifo), u.read(P.UARTRIS, 4) & P.INT_RX, lv[-1]), (15, 0, False),
       "read below the trigger: RXRIS cleared")


def test_fifo_disabled_is_one_deep_and_flushed_on_change():
    u, lv, _ = uart(b"ab\n", fen=False)
    u.write(P.UARTIMSC, 4, P.INT_RX)
    u.event(u.deadline(0))
    eq((len(u.fifo), u.read(P.UARTFR, 4) & P.FR_RXFF, u.read(P.UARTRIS, 4) & P.INT_RX), (1, P.FR_RXFF, P.INT_RX),
       "FEN = 0: a 1-byte holding register, RXRIS at one character")
    eq(u.deadline(None), u.rt_at, "full: only the timeout is pending")
    u.write(P.UARTLCR_H, 4, 0x70)
    eq((len(u.fifo), u.read(P.UARTRIS, 4) & (P.INT_RX | P.INT_RT)), (0, 0), "FEN changed: FIFO flushed")


def test_polling_guest_gets_a_char_per_character_time():
    u, _, _ = uart(b"hi\n")
    got = [u.read(P.UARTFR, 4, now=500 + i) & P.FR_RXFE for i in range(P.POLL_READS)]
    eq(got, [P.FR_RXFE] * (P.POLL_READS - 1) + [0], "the POLL_READS-th read of the empty receiver: a character")
    eq(u.read(P.UARTDR, 4, now=600), ord("h"), "the character")
    got = [u.read(P.UARTFR, 4, now=700 + i) & P.FR_RXFE for i in range(2 * P.POLL_READS)]
    eq(got, [P.FR_RXFE] * (2 * P.POLL_READS), "polled again within a character time: empty")
    t = u.line_free                          # one character time after the last arrival
    got = [u.read(P.UARTFR, 4, now=t) & P.FR_RXFE for _ in range(P.POLL_READS)]
    eq((got[-1], u.read(P.UARTDR, 4, now=t)), (0, ord("i")), "polls one character time on: the next")


def test_console_output_is_not_polling():
    """Linux's pl011_console_write: FR (TXFF?) then DR per character, FR (BUSY?) at the end."""
    u, _, _ = uart(b"lost?\n")
    for msg in range(50):
        for ch in b"[ 0.1] msg\n":
            u.read(P.UARTFR, 4, now=msg)
            u.write(P.UARTDR, 4, ch, now=msg)
        u.read(P.UARTFR, 4, now=msg)
    eq((u.rx.reads, len(u.fifo)), (0, 0), "no input consumed by console output")


def test_linux_startup_drain_loses_nothing():
    """amba-pl011's startup unmasks RX, then drains the FIFO reading FR/DR: those reads
    are not polls (RX unmasked), so nothing arrives to be thrown away."""
    u, _, _ = uart(b"echo hi\n")
    u.write(P.UARTIMSC, 4, P.INT_RX | P.INT_RT)
    for i in range(64):
        if u.read(P.UARTFR, 4, now=i) & P.FR_RXFE:
            break
        u.read(P.UARTDR, 4, now=i)
    eq((u.rx.reads, len(u.fifo)), (0, 0), "no input consumed while the guest drains")


def test_end_of_input():
    u, _, _ = uart(b"")
    u.write(P.UARTIMSC, 4, P.INT_RT)
    u.event(u.deadline(0))
    eq((u.rx.eof, u.deadline(10**6)), (True, NEVER), "after end of input nothing more is scheduled")


def test_divisor_and_format_latched_by_lcr_h():
    u, _, _ = uart(fen=False)
    u.write(P.UARTIBRD, 4, 39)                   # 38400 baud at 24 MHz: 39 + 4/64
    u.write(P.UARTFBRD, 4, 4)
    eq(u.char_cycles, 7 * 16 * P.DEFAULT_DIV64 * CPU_HZ // (64 * P.UARTCLK_HZ),
       "not latched before LCR_H (reset format 5N1: 7 bits, unprogrammed divisor: 115200)")
    u.write(P.UARTLCR_H, 4, 0x70 | P.LCR_H_PEN | P.LCR_H_STP2)   # 8 bits, parity, 2 stop: 12 bits
    eq(u.char_cycles, 12 * 16 * (64 * 39 + 4) * CPU_HZ // (64 * P.UARTCLK_HZ), "latched with the format")


@pytest.mark.parametrize("op, off", [("read", 0x050), ("read", P.UARTICR), ("write", 0xFE0), ("write", P.UARTFR)])
def test_no_such_register(op, off):
    u, _, _ = uart()
    with pytest.raises(DeviceError, match=f"offset {off:#x}"):
        u.read(off, 4) if op == "read" else u.write(off, 4, 0)


# --- through the VMM and the vGIC ------------------------------------------------------------
UART_INTID = layout.SPI_BASE + layout.UART_SPI


def test_interrupt_level_reaches_the_vgic_and_charges_kvm_irq_line(xgene):
    m = Machine(MachineConfig(kernel=paths.image_path("hello.elf")), xgene, console=Console(echo=False))
    vgic, v0 = m.vm.vgic, m.vcpus[0]
    vgic.dist_write(0, 0x000, 4, 1)                               # GICD_CTLR.EnableGrp0
    vgic.dist_write(0, 0x100 + 4 * (UART_INTID // 32), 4, 1 << (UART_INTID % 32))   # ISENABLER
    before = v0.cpu.st.charged
    m._mmio_vcpu, m.now = v0, 777
    m.uart.write(P.UARTIMSC, 4, P.INT_TX)
    m.uart.write(P.UARTDR, 4, ord("x"))
    irq = vgic.irq_state(UART_INTID, 0)
    eq((irq.line_level, vgic.has_pending(0)), (True, True), "SPI 1 line high and pending for vCPU0")
    eq(v0.cpu.st.charged - before, xgene.costs["kvm_irq_line"], "one KVM_IRQ_LINE charged to the vCPU thread")
    v0.blocked_until = 10**9                                       # asleep in WFI
    m.uart.write(P.UARTICR, 4, P.INT_TX)
    eq(irq.line_level, False, "ICR: the line drops")
    m._mmio_vcpu, m.now = None, 5000
    m.uart.write(P.UARTDR, 4, ord("y"))                            # from the VMM's I/O thread
    eq((irq.line_level, v0.blocked_until), (True, 5000), "the level rises and kicks the sleeper awake at 5000")
