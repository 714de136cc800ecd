"""ARM PrimeCell UART PL011 r1p5 (ARM DDI 0183G), the user-space device model, with
QEMU's hw/char/pl011.c as the behavioural reference where the TRM leaves room.

Transmit: a character written to UARTDR leaves at once (the host drains the TX FIFO
as QEMU does), so TXFE = 1, TXFF = 0, BUSY = 0, and TXRIS is set by every write
(the FIFO is back at or below its trigger level) until UARTICR clears it.

Receive: a 32-entry FIFO (r1p5; 1 entry when LCR_H.FEN = 0) filled by the serial
line from the host (`SerialInput`), with the RX level interrupt (RXRIS when the FIFO
reaches the UARTIFLS trigger, cleared by reading below it) and the RX timeout
interrupt (RTRIS 32 bit periods after the last character arrived while the FIFO is
not empty, cleared when it empties).  Line timing is virtual: one character takes
(1 + data + parity + stop) bit periods of 16 * (IBRD + FBRD/64) UARTCLK cycles
(24 MHz, the apb-pclk clock of the DTB; an unprogrammed divisor counts as 115200
baud), converted to CPU cycles.  Enables (UARTEN, TXE, RXE) are not enforced, as in
QEMU, so bare-metal programs that never set UARTEN still print.

When the line delivers (deterministic: it depends on the guest's actions and the
input's bytes, never on when they reach armvirt):
  * a line starts only while the guest waits for input: every vCPU of the VM is in
    WFI with an RX interrupt unmasked (UARTIMSC.RXIM or RTIM) and the RX FIFO empty,
    or the guest polls the empty receiver with both RX interrupts masked: POLL_READS
    reads in a row of UARTFR showing RXFE (or of an empty UARTDR) with no other
    access to the UART, nor to another user-space device (`other_device_access`),
    between them (Linux's console output reads UARTFR at most twice between two
    UARTDR writes, and its open-time drain once: neither polls; U-Boot checking for
    Ctrl-C between the flash operations of a `saveenv` is busy, not waiting);
  * an interrupt-driven guest gets it once its output has been quiet for QUIET_S of
    virtual time (as a person types the next command once the prompt is there);
  * it then sends characters one character time apart, up to and including the next
    newline, holding off while the FIFO is full (no overrun), and at end of input.
So a guest gets one line per wait, at the line's rate; nothing arrives while it is
busy or before its driver listens (Linux drains the FIFO when the port opens).

Interrupt: UARTINTR (the OR of UARTMIS) drives SPI 1 through `irq(level)`.
Offsets that are no register raise DeviceError, which the VMM turns into an external
abort for the guest.
"""
from __future__ import annotations

from collections import deque
from typing import Callable

from armvirt.console import Console

UARTDR, UARTRSR, UARTFR, UARTILPR, UARTIBRD, UARTFBRD = 0x000, 0x004, 0x018, 0x020, 0x024, 0x028
UARTLCR_H, UARTCR, UARTIFLS, UARTIMSC, UARTRIS, UARTMIS, UARTICR, UARTDMACR = (
    0x02C, 0x030, 0x034, 0x038, 0x03C, 0x040, 0x044, 0x048)
FR_BUSY, FR_RXFE, FR_TXFF, FR_RXFF, FR_TXFE = 1 << 3, 1 << 4, 1 << 5, 1 << 6, 1 << 7
# PeriphID of r1p5 (revision 3 in PeriphID2: Linux's amba-pl011 picks a 32-deep FIFO
# for revision >= 3) and the PrimeCell ID (DDI 0183G 3.3.14-3.3.15).
ID_REGS = {0xFE0: 0x11, 0xFE4: 0x10, 0xFE8: 0x34, 0xFEC: 0x00,
           0xFF0: 0x0D, 0xFF4: 0xF0, 0xFF8: 0x05, 0xFFC: 0xB1}
# UARTRIS/UARTMIS/UARTIMSC/UARTICR bits (DDI 0183G 3.3.10-3.3.13)
INT_RX, INT_TX, INT_RT = 1 << 4, 1 << 5, 1 << 6
INT_ALL = 0x7FF
LCR_H_PEN, LCR_H_STP2, LCR_H_FEN = 1 << 1, 1 << 3, 1 << 4
FIFO_DEPTH = 32
UARTCLK_HZ = 24_000_000
DEFAULT_DIV64 = 64 * 13 + 1          # 115200 baud at 24 MHz: IBRD 13, FBRD 1
NEVER = 2**64 - 1
POLL_READS = 4
QUIET_S = 0.1                    # output quiet this long before an idle guest gets a line
_TRIGGER_EIGHTHS = {0: 1, 1: 2, 2: 4, 3: 6, 4: 7}   # IFLS RXIFLSEL: 1/8 .. 7/8 full

# Registers that are plain storage: reset value, writable mask (DDI 0183G table 3-1).
_PLAIN = {UARTILPR: (0, 0xFF), UARTIBRD: (0, 0xFFFF), UARTFBRD: (0, 0x3F), UARTLCR_H: (0, 0xFF),
          UARTCR: (0x300, 0xFF87), UARTIFLS: (0x12, 0x3F), UARTIMSC: (0, INT_ALL), UARTDMACR: (0, 0x7)}


class DeviceError(Exception):
    pass


class Pl011:
    name = "pl011"

    def __init__(self, console: Console, irq: Callable[[bool], None] = lambda level: None,
                 cpu_hz: int = 1_000_000_000, rx=None, log: Callable[[str], None] = lambda msg: None):
        self.console, self.irq, self.cpu_hz, self.rx, self.log = console, irq, cpu_hz, rx, log
        self.level = False
        self.reset()

    def reset(self) -> None:
        """Power-on state (DDI 0183G table 3-1); the receive line starts idle."""
        self.regs = {off: v for off, (v, _) in _PLAIN.items()}
        self.ris = 0
        self.fifo: deque[int] = deque()
        self._div64 = DEFAULT_DIV64     # latched by a UARTLCR_H write, with the line format
        self._lcr = 0
        self.line_free = 0              # cycles: the line may send its next character then
        self.rt_at: int | None = None   # cycles: the RX timeout fires then (FIFO not empty)
        self.in_line = False            # sending a line: carry on to its newline
        self.delivered = 0
        self.empty_reads = 0            # reads of the empty receiver in a row (polling)
        self.last_tx = 0                # cycles: the last character the guest wrote
        self._update()

    # --- line timing (virtual) -----------------------------------------------------------
    def _bit_cycles_x(self, bits: int) -> int:
        """CPU cycles of `bits` bit periods: bits * 16 * div64/64 / UARTCLK * cpu_hz."""
        return bits * 16 * self._div64 * self.cpu_hz // (64 * UARTCLK_HZ)

    @property
    def char_cycles(self) -> int:
        lcr = self._lcr
        bits = 1 + (5 + ((lcr >> 5) & 3)) + (1 if lcr & LCR_H_PEN else 0) + (2 if lcr & LCR_H_STP2 else 1)
        return self._bit_cycles_x(bits)

    @property
    def timeout_cycles(self) -> int:
        return self._bit_cycles_x(32)

    @property
    def depth(self) -> int:
        return FIFO_DEPTH if self.regs[UARTLCR_H] & LCR_H_FEN else 1

    @property
    def trigger(self) -> int:
        if not self.regs[UARTLCR_H] & LCR_H_FEN:
            return 1
        return FIFO_DEPTH * _TRIGGER_EIGHTHS.get((self.regs[UARTIFLS] >> 3) & 7, 4) // 8

    def _listening(self) -> bool:
        return bool(self.regs[UARTIMSC] & (INT_RX | INT_RT))

    def _can_send(self) -> bool:
        return self.rx is not None and not self.rx.eof and len(self.fifo) < self.depth

    # --- the VMM's timed events ------------------------------------------------------------
    def deadline(self, idle_since: int | None) -> int:
        """Next event: the RX timeout, or the line's next character (`idle_since`: the
        time every vCPU of the VM was in WFI, None while any runs)."""
        at = self.rt_at if self.rt_at is not None else NEVER
        if self._can_send():
            if self.in_line:
                at = min(at, self.line_free)
            elif idle_since is not None and self._listening() and not self.fifo:
                quiet = self.last_tx + int(self.cpu_hz * QUIET_S)
                at = min(at, max(self.line_free, idle_since, quiet))
        return at

    def event(self, now: int, wait_until: int | None = None) -> None:
        """Run what is due at `now`; `wait_until` bounds how long a terminal may be
        waited on for a key (None: the guest has nothing else to do)."""
        if self.rt_at is not None and self.rt_at <= now:
            self.rt_at = None
            self.ris |= INT_RT
        elif self._can_send():
            self._receive(now, wait_until)
        self._update()

    def _receive(self, now: int, wait_until: int | None = None) -> bool:
        byte = self.rx.next_byte(self._wait_seconds(now, wait_until))
        if byte is None:                 # end of input, or no key pressed in time
            self.in_line = False
            if not self.rx.eof:
                self.line_free = wait_until if wait_until is not None else now
            return False
        self.fifo.append(byte)
        self.delivered += 1
        self.line_free = now + self.char_cycles
        self.rt_at = now + self.timeout_cycles
        self.in_line = byte not in (0x0A, 0x0D)
        if len(self.fifo) == self.trigger:          # the FIFO reaches its trigger level
            self.ris |= INT_RX
        return True

    def _wait_seconds(self, now: int, wait_until: int | None) -> float | None:
        if wait_until is None:
            return None
        return max(0, wait_until - now) / self.cpu_hz

    def _update(self) -> None:
        level = bool(self.ris & self.regs[UARTIMSC])
        if level != self.level:
            self.level = level
            self.irq(level)

    # --- registers ---------------------------------------------------------------------------
    def _flags(self) -> int:
        fr = FR_TXFE                     # transmit FIFO always empty, never busy
        if not self.fifo:
            fr |= FR_RXFE
        if len(self.fifo) >= self.depth:
            fr |= FR_RXFF
        return fr

    def _poll(self, now: int) -> None:
        """A read of the receiver: empty, with RX interrupts masked, POLL_READS times in a
        row means the guest polls, so the line may send (one character time after the last)."""
        if self.fifo or self._listening():
            self.empty_reads = 0
            return
        self.empty_reads += 1
        if self.empty_reads >= POLL_READS and self._can_send() and now >= self.line_free:
            self._receive(now, now)

    def read(self, offset: int, size: int, now: int = 0) -> int:
        if offset not in (UARTDR, UARTFR):
            self.empty_reads = 0
        if offset == UARTDR:
            self._poll(now)
            if not self.fifo:
                return 0
            self.empty_reads = 0
            if len(self.fifo) >= self.depth:
                self.line_free = max(self.line_free, now)   # room again from now on
            v = self.fifo.popleft()
            if len(self.fifo) < self.trigger:
                self.ris &= ~INT_RX
            if not self.fifo:
                self.ris &= ~INT_RT
                self.rt_at = None
            self._update()
            return v
        if offset == UARTFR:
            self._poll(now)
            self._update()
            return self._flags()
        if offset == UARTRSR:
            return 0                     # no framing/parity/break/overrun error ever occurs
        if offset == UARTRIS:
            return self.ris
        if offset == UARTMIS:
            return self.ris & self.regs[UARTIMSC]
        if offset in ID_REGS:
            return ID_REGS[offset]
        if offset in self.regs:
            return self.regs[offset]
        raise DeviceError(f"PL011 read of offset {offset:#x}, which is no register")

    def other_device_access(self) -> None:
        """The guest accessed another user-space device: reads of the receiver around it
        are not in a row (a busy guest checking for input, not one waiting for it)."""
        self.empty_reads = 0

    # --- the registers the engine serves (host_kernel/fast_mmio.py) -------------------------
    def fast_flags(self) -> tuple[bool, int, bool, int, bool]:
        """(UARTFR reads may be served, the value they read, RX interrupts unmasked, the
        count of empty reads a served one must stay below, UARTDR writes may be served),
        while nothing else touches the device: a read of UARTFR then only counts an empty
        read (or resets the count; the line may start at POLL_READS of them), and a write
        of UARTDR sends the character, sets TXRIS and leaves the interrupt level as it is."""
        imsc = self.regs[UARTIMSC]
        listening = bool(imsc & (INT_RX | INT_RT))
        limit = POLL_READS if not listening and self._can_send() else NEVER
        dr_ok = bool((self.ris | INT_TX) & imsc) == self.level
        return not self.fifo, self._flags(), listening, limit, dr_ok

    def fast_fold(self, empty_reads: int, last_tx: int, tx_written: bool, sent: bytes) -> None:
        """What the served accesses did: the characters, in order, then the state."""
        for byte in sent:
            self.console.put(byte)
        self.empty_reads = empty_reads
        if tx_written:
            self.ris |= INT_TX
            self.last_tx = last_tx

    def write(self, offset: int, size: int, value: int, now: int = 0) -> None:
        self.empty_reads = 0
        if offset == UARTDR:
            self.console.put(value & 0xFF)
            self.ris |= INT_TX
            self.last_tx = now
        elif offset == UARTICR:
            self.ris &= ~value
        elif offset == UARTRSR:          # a write to UARTECR clears the error flags
            pass
        elif offset in _PLAIN:
            value &= _PLAIN[offset][1]
            if offset == UARTLCR_H:
                if (value ^ self.regs[UARTLCR_H]) & LCR_H_FEN:
                    self.fifo.clear()    # QEMU: the FIFOs are flushed when FEN changes
                    self.rt_at = None
                    self.ris &= ~(INT_RX | INT_RT)
                # IBRD, FBRD and LCR_H form one register updated by the LCR_H write
                ibrd, fbrd = self.regs[UARTIBRD], self.regs[UARTFBRD]
                self._div64 = 64 * ibrd + fbrd if ibrd else DEFAULT_DIV64
                self._lcr = value
            elif offset == UARTDMACR and value:
                self.log(f"PL011: DMA requested (UARTDMACR={value:#x}), not implemented: ignored")
            self.regs[offset] = value
        else:
            raise DeviceError(f"PL011 write of offset {offset:#x}, which is no writable register")
        self._update()
