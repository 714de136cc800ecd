"""The virtio-mmio transport (virtio 1.x, section 4.2.2), modern (Version 2) only: the
user-space device model of the `virt` board's first transport at 0x0a000000, with QEMU's
hw/virtio/virtio-mmio.c as the behavioural reference.

With no device behind it it answers as QEMU's empty transports: MagicValue, Version and
VendorID read their values, every other register reads zero - DeviceID 0 means "no
device" (4.2.3.1.1), so a driver's probe stops there - and writes are ignored.

With a device (`backend`: armvirt.devices.virtio_blk.VirtioBlk) the registers are the
spec's, dispatched by the table REGISTERS (offset -> name, read, write): the status
handshake (4.2.3.1, 3.1.1: ACKNOWLEDGE, DRIVER, FEATURES_OK - refused, i.e. not kept,
for features the device did not offer or without VIRTIO_F_VERSION_1 -, DRIVER_OK;
Status = 0 resets the device), feature words selected by DeviceFeaturesSel /
DriverFeaturesSel, the queue registers of the queue QueueSel selects (QueueNumMax,
QueueNum, QueueDesc/Driver/Device Low/High, QueueReady), QueueNotify (the device
processes that queue at once, in the exit of the notify's store; a malformed ring sets
DEVICE_NEEDS_RESET with a configuration-change interrupt, as QEMU's virtio_error), InterruptStatus /
InterruptACK (bit 0 used buffer, bit 1 configuration change) driving a level on the
transport's SPI, ConfigGeneration (0: the configuration never changes) and the
device-specific configuration from 0x100 (1, 2 and 4-byte accesses, 4.2.2.2).

Register accesses other than 32 bits below 0x100 read zero and are logged (-d
guest_errors), as QEMU logs them, and are not aborted.
"""
from __future__ import annotations

from typing import Callable

MAGIC_VALUE, VERSION, DEVICE_ID, VENDOR_ID = 0x000, 0x004, 0x008, 0x00C
DEVICE_FEATURES, DEVICE_FEATURES_SEL = 0x010, 0x014
DRIVER_FEATURES, DRIVER_FEATURES_SEL = 0x020, 0x024
QUEUE_SEL, QUEUE_NUM_MAX, QUEUE_NUM, QUEUE_READY, QUEUE_NOTIFY = 0x030, 0x034, 0x038, 0x044, 0x050
INTERRUPT_STATUS, INTERRUPT_ACK, STATUS = 0x060, 0x064, 0x070
QUEUE_DESC_LOW, QUEUE_DESC_HIGH = 0x080, 0x084
QUEUE_DRIVER_LOW, QUEUE_DRIVER_HIGH = 0x090, 0x094
QUEUE_DEVICE_LOW, QUEUE_DEVICE_HIGH = 0x0A0, 0x0A4
SHM_SEL, SHM_LEN_LOW, SHM_LEN_HIGH, SHM_BASE_LOW, SHM_BASE_HIGH = 0x0AC, 0x0B0, 0x0B4, 0x0B8, 0x0BC
CONFIG_GENERATION, CONFIG = 0x0FC, 0x100

MAGIC = 0x7472_6976          # "virt", little-endian
MODERN = 2                   # Version 2: the virtio 1.x (non-legacy) register layout
VENDOR = 0x554D_4551         # "QEMU": QEMU's VIRT_VENDOR, the value its guests have always read

# Device status bits (2.1)
ACKNOWLEDGE, DRIVER, DRIVER_OK, FEATURES_OK, DEVICE_NEEDS_RESET, FAILED = 1, 2, 4, 8, 64, 128
VIRTIO_F_VERSION_1 = 32
INT_VRING, INT_CONFIG = 1, 2


class VirtioMmio:
    name = "virtio-mmio"

    def __init__(self, device_id: int = 0, log: Callable[[str], None] = lambda msg: None,
                 unimp: Callable[[str], None] = lambda msg: None, backend=None,
                 irq: Callable[[bool], None] = lambda level: None):
        """`log`: an access the guest should not make (-d guest_errors); `unimp`: what
        armvirt does not model (-d unimp), here the device a driver probes for;
        `backend`: the device behind the transport (None: an empty transport);
        `irq`: the transport's interrupt line (level = InterruptStatus != 0)."""
        self.backend = backend
        self.device_id = backend.device_id if backend is not None else device_id
        self.log, self.unimp, self.irq = log, unimp, irq
        self.regs = {MAGIC_VALUE: MAGIC, VERSION: MODERN, DEVICE_ID: self.device_id, VENDOR_ID: VENDOR}
        self.level = False
        self.reset()

    def reset(self) -> None:
        """Device reset (Status = 0, 4.2.3.1; QEMU virtio_reset): everything back to power-on."""
        self.status = 0
        self.device_features_sel = self.driver_features_sel = 0
        self.driver_features = 0
        self.queue_sel = 0
        self.isr = 0
        if self.backend is not None:
            self.backend.reset()
        self._update_irq()

    # --- the interrupt ------------------------------------------------------------
    def _update_irq(self) -> None:
        level = self.isr != 0
        if level != self.level:
            self.level = level
            self.irq(level)

    def notify_used(self) -> None:
        """The device put used buffers (QEMU virtio_notify): InterruptStatus bit 0."""
        self.isr |= INT_VRING
        self._update_irq()

    # --- register accessors ---------------------------------------------------------
    def _queue(self):
        qs = self.backend.queues
        return qs[self.queue_sel] if self.queue_sel < len(qs) else None

    def _qfield(self, attr: str, high: bool | None = None):
        """Read and write accessors of a field of the selected queue (a 64-bit address's
        low or high word when `high` is not None).  No queue selected: RAZ/WI."""
        def rd() -> int:
            q = self._queue()
            if q is None:
                return 0
            v = int(getattr(q, attr))
            return (v >> 32 if high else v) & 0xFFFF_FFFF if high is not None else v

        def wr(value: int) -> None:
            q = self._queue()
            if q is None:
                return
            if q.ready and attr != "ready":
                self.log(f"virtio-mmio: queue {self.queue_sel} {attr} written while QueueReady (ignored)")
                return
            if high is None:
                setattr(q, attr, value)
            else:
                old = getattr(q, attr)
                setattr(q, attr, (old & 0xFFFF_FFFF) | value << 32 if high else
                        (old & ~0xFFFF_FFFF) | value)
        return rd, wr

    def _device_features(self) -> int:
        return (self.backend.features >> (32 * self.device_features_sel)) & 0xFFFF_FFFF \
            if self.device_features_sel < 2 else 0

    def _set_driver_features(self, value: int) -> None:
        if self.driver_features_sel < 2:
            shift = 32 * self.driver_features_sel
            self.driver_features = (self.driver_features & ~(0xFFFF_FFFF << shift)) | value << shift

    def _set_queue_num(self, value: int) -> None:
        q = self._queue()
        if q is None:
            return
        if not 0 < value <= q.num_max or value & (value - 1):
            # QEMU: virtio_queue_set_num takes any value up to the maximum; a split
            # queue's size must be a power of 2 (2.7): refuse it, keep the old one
            self.log(f"virtio-mmio: QueueNum {value} for queue {self.queue_sel}: not a power of 2 "
                     f"up to QueueNumMax {q.num_max} (ignored)")
            return
        q.num = value

    def _set_queue_ready(self, value: int) -> None:
        q = self._queue()
        if q is not None:
            q.ready = bool(value & 1)

    def _set_status(self, value: int) -> None:
        value &= 0xFF
        if value == 0:
            self.reset()
            return
        if value & FEATURES_OK and not self.status & FEATURES_OK:
            bad = self.driver_features & ~self.backend.features
            if bad or not self.driver_features >> VIRTIO_F_VERSION_1 & 1:
                why = (f"features {bad:#x} were not offered" if bad else "VIRTIO_F_VERSION_1 was not accepted")
                self.log(f"virtio-mmio: FEATURES_OK refused: {why}")
                value &= ~FEATURES_OK
            else:
                self.backend.set_features(self.driver_features)
        self.status = value

    def _notify(self, value: int) -> None:
        if not self.status & DRIVER_OK:
            self.log(f"virtio-mmio: QueueNotify {value} before DRIVER_OK (ignored)")
            return
        used = self.backend.process(value)
        if self.backend.broken and not self.status & DEVICE_NEEDS_RESET:
            # QEMU virtio_error: DEVICE_NEEDS_RESET and a configuration-change interrupt
            self.status |= DEVICE_NEEDS_RESET
            self.isr |= INT_CONFIG
        if used:
            self.isr |= INT_VRING
        self._update_irq()

    def _ack(self, value: int) -> None:
        self.isr &= ~value
        self._update_irq()

    def _registers(self) -> dict:
        """offset -> (name, read or None, write or None): the spec's table 4.2.2."""
        const = lambda v: (lambda: v)
        t = {
            MAGIC_VALUE: ("MagicValue", const(MAGIC), None),
            VERSION: ("Version", const(MODERN), None),
            DEVICE_ID: ("DeviceID", const(self.device_id), None),
            VENDOR_ID: ("VendorID", const(VENDOR), None),
            DEVICE_FEATURES: ("DeviceFeatures", self._device_features, None),
            DEVICE_FEATURES_SEL: ("DeviceFeaturesSel", None, lambda v: setattr(self, "device_features_sel", v)),
            DRIVER_FEATURES: ("DriverFeatures", None, self._set_driver_features),
            DRIVER_FEATURES_SEL: ("DriverFeaturesSel", None, lambda v: setattr(self, "driver_features_sel", v)),
            QUEUE_SEL: ("QueueSel", None, lambda v: setattr(self, "queue_sel", v)),
            QUEUE_NUM_MAX: ("QueueNumMax", self._qfield("num_max")[0], None),
            QUEUE_NUM: ("QueueNum", None, self._set_queue_num),
            QUEUE_READY: ("QueueReady", self._qfield("ready")[0], self._set_queue_ready),
            QUEUE_NOTIFY: ("QueueNotify", None, self._notify),
            INTERRUPT_STATUS: ("InterruptStatus", lambda: self.isr, None),
            INTERRUPT_ACK: ("InterruptACK", None, self._ack),
            STATUS: ("Status", lambda: self.status, self._set_status),
            CONFIG_GENERATION: ("ConfigGeneration", const(0), None),
            SHM_SEL: ("SHMSel", None, lambda v: None),               # no shared memory regions:
            SHM_LEN_LOW: ("SHMLenLow", const(0xFFFF_FFFF), None),    # length -1 means none (4.2.2)
            SHM_LEN_HIGH: ("SHMLenHigh", const(0xFFFF_FFFF), None),
            SHM_BASE_LOW: ("SHMBaseLow", const(0xFFFF_FFFF), None),
            SHM_BASE_HIGH: ("SHMBaseHigh", const(0xFFFF_FFFF), None),
        }
        for off, attr, high in ((QUEUE_DESC_LOW, "desc", False), (QUEUE_DESC_HIGH, "desc", True),
                                (QUEUE_DRIVER_LOW, "driver", False), (QUEUE_DRIVER_HIGH, "driver", True),
                                (QUEUE_DEVICE_LOW, "device", False), (QUEUE_DEVICE_HIGH, "device", True)):
            name = f"Queue{attr.capitalize()}{'High' if high else 'Low'}"
            t[off] = (name, self._qfield(attr, high)[0], self._qfield(attr, high)[1])
        return t

    # --- the bus interface ----------------------------------------------------------
    def read(self, offset: int, size: int, now: int = 0) -> int:
        if self.backend is not None and offset >= CONFIG:
            return self.backend.config_read(offset - CONFIG, size)
        if size != 4:
            self.log(f"virtio-mmio: {size}-byte read at offset {offset:#x}: registers are 32-bit (RAZ)")
            return 0
        if self.backend is None:
            if offset == DEVICE_ID and self.device_id == 0:
                self.unimp("virtio-mmio: DeviceID read: 0, no device behind the transport "
                           "(armvirt models no virtio devices)")
            return self.regs.get(offset, 0)
        reg = self.table.get(offset)
        if reg is None or reg[1] is None:
            self.log(f"virtio-mmio: read of offset {offset:#x}"
                     f"{f' ({reg[0]}, write-only)' if reg else ', no register'} (RAZ)")
            return 0
        return reg[1]() & 0xFFFF_FFFF

    def write(self, offset: int, size: int, value: int, now: int = 0) -> None:
        if self.backend is not None and offset >= CONFIG:
            self.backend.config_write(offset - CONFIG, size, value)
            return
        if size != 4:
            self.log(f"virtio-mmio: {size}-byte write at offset {offset:#x}: registers are 32-bit (WI)")
            return
        if self.backend is None:
            return            # no device: nothing to configure, every write is ignored (as QEMU with no backend)
        reg = self.table.get(offset)
        if reg is None or reg[2] is None:
            self.log(f"virtio-mmio: write of {value:#x} to offset {offset:#x}"
                     f"{f' ({reg[0]}, read-only)' if reg else ', no register'} (WI)")
            return
        reg[2](value & 0xFFFF_FFFF)

    @property
    def table(self) -> dict:
        t = self.__dict__.get("_table")
        if t is None:
            t = self._table = self._registers()
        return t
