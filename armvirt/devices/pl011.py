"""ARM PrimeCell UART PL011 (ARM DDI 0183), the user-space device model.

Transmit only, as a console: the FIFO never fills, receive is always empty.
Offsets that are no register of the PL011 raise DeviceError, which the VMM
turns into an external abort for the guest.
"""
from __future__ import annotations

from armvirt.console import Console

UARTDR, UARTRSR, UARTFR, UARTILPR, UARTIBRD, UARTFBRD = 0x000, 0x004, 0x018, 0x020, 0x024, 0x028
UARTLCR_H, UARTCR, UARTIFLS, UARTIMSC, UARTRIS, UARTMIS, UARTICR, UARTDMACR = (
    0x02C, 0x030, 0x034, 0x038, 0x03C, 0x040, 0x044, 0x048)
FR_RXFE, FR_TXFE = 1 << 4, 1 << 7
ID_REGS = {0xFE0: 0x11, 0xFE4: 0x10, 0xFE8: 0x14, 0xFEC: 0x00,     # PeriphID: PL011 r1p5
           0xFF0: 0x0D, 0xFF4: 0xF0, 0xFF8: 0x05, 0xFFC: 0xB1}     # PrimeCell ID
INT_TX = 1 << 5


class DeviceError(Exception):
    pass


class Pl011:
    name = "pl011"

    def __init__(self, console: Console):
        self.console = console
        self.regs = {UARTRSR: 0, UARTILPR: 0, UARTIBRD: 0, UARTFBRD: 0, UARTLCR_H: 0,
                     UARTCR: 0x300, UARTIFLS: 0x12, UARTIMSC: 0, UARTDMACR: 0}
        self.ris = INT_TX                 # the transmit FIFO is always below its trigger level

    def read(self, offset: int, size: int) -> int:
        if offset == UARTDR:
            return 0                      # nothing received
        if offset == UARTFR:
            return FR_TXFE | FR_RXFE
        if offset == UARTRIS:
            return self.ris
        if offset == UARTMIS:
            return self.ris & self.regs[UARTIMSC]
        if offset in ID_REGS:
            return ID_REGS[offset]
        if offset in self.regs:
            return self.regs[offset]
        raise DeviceError(f"PL011 read of offset {offset:#x}, which is no register")

    def write(self, offset: int, size: int, value: int) -> None:
        if offset == UARTDR:
            self.console.put(value & 0xFF)
        elif offset == UARTICR:
            self.ris &= ~value | INT_TX
        elif offset in self.regs and offset != UARTRSR:
            self.regs[offset] = value & 0xFFFF
        elif offset == UARTRSR:           # a write to UARTECR clears the error flags
            self.regs[UARTRSR] = 0
        else:
            raise DeviceError(f"PL011 write of offset {offset:#x}, which is no writable register")
