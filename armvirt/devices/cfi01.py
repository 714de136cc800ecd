"""CFI parallel NOR flash with the Intel/Sharp command set (CFI primary vendor command
set 0x0001, "CFI01"): one bank of the `virt` board's flash, a user-space device model
with QEMU's hw/block/pflash_cfi01.c as the behavioural reference.

Geometry (QEMU hw/arm/virt.c virt_flash_create1): a bank is 64 MiB of 256 KiB sectors,
32 bits wide (`bank_width` 4) made of two x16 parts side by side (`device_width` 2),
manufacturer 0x89 (Intel), device 0x18, little-endian.

ROM mode.  In read-array mode the array is ROM: the VMM gives it to the guest as a
read-only memory slot, so reads and instruction fetches never leave the guest and only
writes reach this model (QEMU's ROM-D region, KVM_MEM_READONLY).  The first write of a
command takes the bank out of ROM mode (`romd(False)`: the slot goes and every access
comes here) until a command returns it to read array (`romd(True)`: the slot again).

Commands, first bus cycle (FIRST_CYCLE); later cycles go to the pending command's
handler (NEXT_CYCLE):
  0xFF read array (also 0x00, QEMU's own value for it, and 0xF0, the AMD reset a probe
       sends); 0x70 read status; 0x50 clear status (then read array); 0x90 read
       identifier; 0x98 CFI query (until 0xFF);
  0x10/0x40 word program: the next write is the data;
  0x20 block erase: 0xD0 confirms and erases the sector (0xFF cancels);
  0xE8 write to buffer: word count - 1, that many + 1 data writes, 0xD0 confirms;
  0x60 block lock setup: 0xD0 / 0x01 complete it (no lock bits are modelled: QEMU's).
Anything else is an unimplemented sequence: logged (`log`, -d unimp) and read array,
as QEMU.  The write state machine is ready at once (SR.7 set: no timings, as QEMU).

Reads outside ROM mode (READ_MODES, by the last command): the array; the status
register, once per part (a 32-bit read sees it in both halves); the identifier codes and
the CFI table (CFI_TABLE, QEMU's for this geometry) at word offsets in units of the bank
width, replicated per part.  8-byte accesses are two 4-byte ones, as QEMU's memory core
splits them for this device.

A read-only bank (`-drive ...,readonly=on`) sets SR.4 (program error) or SR.5 (erase
error) instead of changing the array.  `persist(offset, length)` gets every changed
range of a bank backed by a writable `-drive` file (QEMU's pflash_update, in 512-byte
sectors); a `-bios` bank has none (writable, never written back, as QEMU's).

One difference from QEMU: a block erase happens at its confirm (0xD0), as on the part
(Intel 28F128J3 datasheet 4.6), where QEMU erases at the setup (0x20) already; U-Boot
and Linux always send both, so they see the same.
"""
from __future__ import annotations

from typing import Callable

READ_ARRAY = 0x00                 # QEMU's internal value of pflash_t.cmd for read-array mode
SR_READY, SR_ERASE_ERR, SR_PROG_ERR = 0x80, 0x20, 0x10
CONFIRM, LOCK_BIT_SET, CMD_READ_ARRAY = 0xD0, 0x01, 0xFF
SECTOR_BYTES = 512                # the block backend's sector (QEMU BDRV_SECTOR_SIZE)
CFI_TABLE_LEN = 0x52


def _ctz(v: int) -> int:
    return (v & -v).bit_length() - 1


def cfi_table(sector_len: int, nb_blocs: int, bank_width: int, device_width: int) -> bytes:
    """QEMU pflash_cfi01_fill_cfi_table (old-multiple-chip-handling off): the CFI query
    answer of one part, which describes its share of the bank."""
    num_devices = bank_width // device_width if device_width else 1
    blocks, sector = nb_blocs, sector_len // num_devices
    t = bytearray(CFI_TABLE_LEN)
    fields = {
        0x10: ord("Q"), 0x11: ord("R"), 0x12: ord("Y"),
        0x13: 0x01, 0x14: 0x00,           # primary command set: Intel/Sharp extended
        0x15: 0x31, 0x16: 0x00,           # primary extended table at 0x31
        0x17: 0x00, 0x18: 0x00, 0x19: 0x00, 0x1A: 0x00,   # no alternate command set
        0x1B: 0x45, 0x1C: 0x55, 0x1D: 0x00, 0x1E: 0x00,   # Vcc 4.5-5.5 V, no Vpp
        0x1F: 0x07, 0x20: 0x07, 0x21: 0x0A, 0x22: 0x00,   # typical timeouts (2^n us / ms)
        0x23: 0x04, 0x24: 0x04, 0x25: 0x04, 0x26: 0x00,   # maximum timeouts (2^n x typical)
        0x27: _ctz(sector * blocks),      # part size 2^n bytes
        0x28: 0x02, 0x29: 0x00,           # interface: x8/x16
        0x2A: 0x08 if bank_width == 1 else 0x0B, 0x2B: 0x00,   # write buffer 2^n bytes
        0x2C: 0x01,                       # one erase block region (uniform)
        0x2D: (blocks - 1) & 0xFF, 0x2E: (blocks - 1) >> 8 & 0xFF,
        0x2F: sector >> 8 & 0xFF, 0x30: sector >> 16 & 0xFF,  # its block size / 256
        0x31: ord("P"), 0x32: ord("R"), 0x33: ord("I"), 0x34: ord("1"), 0x35: ord("0"),
        0x3F: 0x01,                       # one protection register field
    }
    for off, v in fields.items():
        t[off] = v
    return bytes(t)


def _replicate(value: int, part_bits: int, width_bits: int) -> int:
    """One part's answer on every part of the bank (QEMU's deposit32 loops)."""
    out, shift = value, part_bits
    while shift < width_bits:
        out |= value << shift
        shift += part_bits
    return out


class Cfi01Flash:
    access_sizes = (1, 2, 4, 8)       # 8: two 4-byte accesses (QEMU's memory core splits them)

    def __init__(self, name: str, storage, *, sector_len: int, bank_width: int = 4, device_width: int = 2,
                 ids: tuple[int, int] = (0x89, 0x18), readonly: bool = False,
                 romd: Callable[[bool], None] = lambda on: None,
                 persist: Callable[[int, int], None] | None = None,
                 log: Callable[[str], None] = lambda msg: None):
        """`storage`: the bank's array (a writable buffer, the read-only slot's backing)."""
        if len(storage) % sector_len:
            raise ValueError(f"{name}: {len(storage):#x} bytes is no whole number of {sector_len:#x} sectors")
        self.name, self.storage, self.size = name, storage, len(storage)
        self.sector_len, self.bank_width, self.device_width = sector_len, bank_width, device_width
        self.ids, self.readonly = ids, readonly
        self.romd_cb, self.persist, self.log = romd, persist, log
        self.cfi = cfi_table(sector_len, self.size // sector_len, bank_width, device_width)
        self.writeblock_size = (1 << self.cfi[0x2A]) * (bank_width // device_width)
        self.romd = True                  # read-array mode, the array mapped as ROM
        self.dirty = False                # the guest changed the array (programmed or erased)
        self.stores = 0                   # array changes so far (the VMM re-reads code after one)
        self.reset()

    def reset(self) -> None:
        """Power-on and system reset (QEMU pflash_cfi01_system_reset): read array, ready."""
        self.wcycle, self.cmd, self.status, self.counter = 0, READ_ARRAY, SR_READY, 0
        self._set_romd(True)

    def _set_romd(self, on: bool) -> None:
        if on != self.romd:
            self.romd = on
            self.romd_cb(on)

    # --- reads (only outside ROM mode: in it the guest reads the slot) --------------------
    def read(self, offset: int, size: int, now: int = 0) -> int:
        if size == 8:
            return self.read(offset, 4, now) | self.read(offset + 4, 4, now) << 32
        mode = READ_MODES.get(self.cmd)
        if mode is None:                  # cannot happen: QEMU resets to read array then
            self.wcycle, self.cmd = 0, READ_ARRAY
            mode = Cfi01Flash._read_data
        return mode(self, offset, size) & ((1 << 8 * size) - 1)

    def _read_data(self, offset: int, size: int) -> int:
        return int.from_bytes(self.storage[offset:offset + size], "little")

    def _read_status(self, offset: int, size: int) -> int:
        return _replicate(self.status, 8 * self.device_width, 8 * size)

    def _word(self, offset: int) -> int:
        """The part's word address: byte offset / bank width (max device width = width)."""
        return offset >> _ctz(self.bank_width)

    def _read_ident(self, offset: int, size: int) -> int:
        out = 0
        for i in range(0, size, self.bank_width):
            w = self._word(offset + i * self.bank_width) & 0xFF    # 2, 3: block lock status
            v = self.ids[w] if w < 2 else 0
            if w < 2:
                v = _replicate(v, 8 * self.device_width, 8 * self.bank_width)
            out |= v << 8 * i
        return out

    def _read_query(self, offset: int, size: int) -> int:
        out = 0
        for i in range(0, size, self.bank_width):
            w = self._word(offset + i * self.bank_width)
            v = self.cfi[w] if w < len(self.cfi) else 0
            out |= _replicate(v, 8 * self.device_width, 8 * self.bank_width) << 8 * i
        return out

    # --- writes: bus cycles of a command ----------------------------------------------------
    def write(self, offset: int, size: int, value: int, now: int = 0) -> None:
        if size == 8:
            self.write(offset, 4, value & 0xFFFF_FFFF, now)
            self.write(offset + 4, 4, value >> 32, now)
            return
        value &= (1 << 8 * size) - 1
        if self.wcycle == 0:
            self._set_romd(False)         # the bank answers as a device from the first cycle
            handler = FIRST_CYCLE.get(value & 0xFF, Cfi01Flash._unimplemented)
        else:
            handler = NEXT_CYCLE.get(self.cmd, Cfi01Flash._unimplemented)
        handler(self, offset, size, value)

    def _to_read_array(self, *_args) -> None:
        self.wcycle, self.cmd = 0, READ_ARRAY
        self._set_romd(True)

    def _unimplemented(self, offset: int, size: int, value: int) -> None:
        self.log(f"{self.name}: unimplemented flash command sequence (offset {offset:#x}, wcycle {self.wcycle}, "
                 f"cmd {self.cmd:#x}, value {value:#x}): back to read array")
        self._to_read_array()

    def _start(self, offset: int, size: int, value: int) -> None:
        """A command with more bus cycles: 0x10/0x40, 0x20, 0x60, 0x98, 0xE8."""
        self.cmd, self.wcycle = value & 0xFF, 1
        if self.cmd in (0x20, 0xE8):
            self.status |= SR_READY       # QEMU: ready at once (the erase is done by then, the buffer free)

    def _mode(self, offset: int, size: int, value: int) -> None:
        """0x70 read status, 0x90 read identifier: one cycle, a read mode."""
        self.cmd = value & 0xFF

    def _clear_status(self, offset: int, size: int, value: int) -> None:
        self.status = 0
        self._to_read_array()

    def _program(self, offset: int, size: int, value: int) -> None:
        if self.readonly:
            self.status |= SR_PROG_ERR
        else:
            self._store(offset, value.to_bytes(size, "little"))
            self._persist(offset, size)
        self.status |= SR_READY
        self.wcycle = 0                   # cmd stays: reads return the status

    def _erase(self, offset: int, size: int, value: int) -> None:
        cmd = value & 0xFF
        if cmd == CMD_READ_ARRAY:
            self._to_read_array()
            return
        if cmd != CONFIRM:
            self._unimplemented(offset, size, value)
            return
        base = offset & ~(self.sector_len - 1)
        if self.readonly:
            self.status |= SR_ERASE_ERR
        else:
            self._store(base, b"\xff" * self.sector_len)
            self._persist(base, self.sector_len)
        self.status |= SR_READY
        self.wcycle = 0

    def _lock(self, offset: int, size: int, value: int) -> None:
        cmd = value & 0xFF
        if cmd in (CONFIRM, LOCK_BIT_SET):
            self.wcycle = 0
            self.status |= SR_READY
        else:                             # 0xFF, or an unknown (un)lock command: QEMU reads array
            self._to_read_array()

    def _query(self, offset: int, size: int, value: int) -> None:
        if value & 0xFF == CMD_READ_ARRAY:
            self._to_read_array()         # anything else leaves the bank in query mode (QEMU)

    def _buffer(self, offset: int, size: int, value: int) -> None:
        """Write to buffer: count (cycle 1), data (cycle 2, count + 1 times), confirm (3)."""
        if self.wcycle == 1:
            self.counter = value & ((1 << 8 * (self.device_width or self.bank_width)) - 1)
            self.wcycle = 2
        elif self.wcycle == 2:
            if self.readonly:
                self.status |= SR_PROG_ERR
            else:
                self._store(offset, value.to_bytes(size, "little"))
            self.status |= SR_READY
            if self.counter == 0:
                self.wcycle = 3
                if not self.readonly:
                    mask = ~(self.writeblock_size - 1)
                    self._persist(offset & mask, self.writeblock_size)
            self.counter -= 1
        elif value & 0xFF == CONFIRM:
            self.wcycle = 0
            self.status |= SR_READY
        else:
            self.log(f"{self.name}: aborting a buffer write is not modelled (the data is written already): "
                     f"back to read array")
            self._to_read_array()

    def _store(self, offset: int, data: bytes) -> None:
        end = min(offset + len(data), self.size)
        self.storage[offset:end] = data[:end - offset]
        self.dirty = True
        self.stores += 1

    def _persist(self, offset: int, length: int) -> None:
        if self.persist is not None:
            start = offset & ~(SECTOR_BYTES - 1)
            end = min(-(-(offset + length) // SECTOR_BYTES) * SECTOR_BYTES, self.size)
            self.persist(start, end - start)


# First bus cycle in read-array (or a one-cycle read) mode: command byte -> handler.
FIRST_CYCLE = {
    0x00: Cfi01Flash._to_read_array, CMD_READ_ARRAY: Cfi01Flash._to_read_array,
    0xF0: Cfi01Flash._to_read_array,
    0x10: Cfi01Flash._start, 0x40: Cfi01Flash._start, 0x20: Cfi01Flash._start,
    0x60: Cfi01Flash._start, 0x98: Cfi01Flash._start, 0xE8: Cfi01Flash._start,
    0x50: Cfi01Flash._clear_status,
    0x70: Cfi01Flash._mode, 0x90: Cfi01Flash._mode,
}
# Later bus cycles: pending command -> handler.
NEXT_CYCLE = {
    0x10: Cfi01Flash._program, 0x40: Cfi01Flash._program, 0x20: Cfi01Flash._erase,
    0x60: Cfi01Flash._lock, 0x98: Cfi01Flash._query, 0xE8: Cfi01Flash._buffer,
}
# What a read returns outside ROM mode, by the last command (QEMU pflash_read).
READ_MODES = {
    READ_ARRAY: Cfi01Flash._read_data,
    **{c: Cfi01Flash._read_status for c in (0x10, 0x20, 0x40, 0x50, 0x60, 0x70, 0xE8)},
    0x90: Cfi01Flash._read_ident,
    0x98: Cfi01Flash._read_query,
}
