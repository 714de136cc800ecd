"""A virtio-mmio transport with no device behind it (virtio 1.x, section 4.2.2), the
user-space device model of the `virt` board's first transport at 0x0a000000.

It answers as QEMU's hw/virtio/virtio-mmio.c answers for a transport with no
backend plugged in: MagicValue, Version and VendorID read their values, every
other register reads zero - DeviceID 0 means "no device" (4.2.3.1.1), so a
driver's probe stops there - and writes are ignored.  The spec makes register
accesses 32 bits wide (4.2.2.2): another width reads zero and is logged, as
QEMU logs it, not aborted.  The device-specific configuration space (0x100 up)
is empty: it reads zero too.
"""
from __future__ import annotations

from typing import Callable

MAGIC_VALUE, VERSION, DEVICE_ID, VENDOR_ID = 0x000, 0x004, 0x008, 0x00C
MAGIC = 0x7472_6976          # "virt", little-endian
MODERN = 2                   # Version 2: the virtio 1.x (non-legacy) register layout
VENDOR = 0x554D_4551         # "QEMU": QEMU's VIRT_VENDOR, the value its guests have always read


class VirtioMmio:
    name = "virtio-mmio"

    def __init__(self, device_id: int = 0, log: Callable[[str], None] = lambda msg: None,
                 unimp: Callable[[str], None] = lambda msg: None):
        """`log`: an access the guest should not make (-d guest_errors); `unimp`: what
        armvirt does not model (-d unimp), here the device a driver probes for."""
        self.device_id, self.log, self.unimp = device_id, log, unimp
        self.regs = {MAGIC_VALUE: MAGIC, VERSION: MODERN, DEVICE_ID: device_id, VENDOR_ID: VENDOR}

    def read(self, offset: int, size: int, now: int = 0) -> int:
        if size != 4:
            self.log(f"virtio-mmio: {size}-byte read at offset {offset:#x}: registers are 32-bit (RAZ)")
            return 0
        if offset == DEVICE_ID and self.device_id == 0:
            self.unimp("virtio-mmio: DeviceID read: 0, no device behind the transport "
                       "(armvirt models no virtio devices)")
        return self.regs.get(offset, 0)

    def write(self, offset: int, size: int, value: int, now: int = 0) -> None:
        if size != 4:
            self.log(f"virtio-mmio: {size}-byte write at offset {offset:#x}: registers are 32-bit (WI)")
        # no device: nothing to configure, every write is ignored (as QEMU with no backend)
