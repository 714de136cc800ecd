"""virtio-blk (virtio 1.2 section 5.2), the device behind a virtio-mmio transport: QEMU's
`-device virtio-blk-device,drive=ID` on a `-drive if=none,id=ID,file=F,format=raw`, with
QEMU's hw/block/virtio-blk.c as the behavioural reference.

One request queue of QUEUE_SIZE entries (QEMU's default queue-size).  Features offered
(each one implemented): VIRTIO_F_VERSION_1, VIRTIO_BLK_F_SEG_MAX (seg_max = QUEUE_SIZE - 2,
QEMU's value), VIRTIO_BLK_F_BLK_SIZE (512), VIRTIO_BLK_F_FLUSH (the image file is
fdatasync'ed) and, for `readonly=on`, VIRTIO_BLK_F_RO.

A request (5.2.6) is a descriptor chain: the device-readable header (le32 type,
le32 reserved, le64 sector), the data (device-readable for OUT, device-writable for IN
and GET_ID) and a device-writable status byte, last.  Types: VIRTIO_BLK_T_IN (read
sectors), T_OUT (write: to the file, only for a writable drive), T_FLUSH and T_GET_ID (20
bytes of serial: QEMU's default is empty, so zeros).  Status: VIRTIO_BLK_S_OK, S_IOERR
(a buffer outside guest RAM, a range past the capacity or not a whole number of sectors,
a write to a read-only drive, a malformed chain that still has a status byte), S_UNSUPP
(any other type).  Every IOERR the guest caused is logged (`log`, -d guest_errors).

The image is read and written in place (QEMU writes back to the file, format=raw): reads
with os.pread, writes with os.pwrite on the open file, so the file holds the guest's
writes when the run ends.  `charge(key, what)` charges the work each request does to the
vCPU whose notify runs it (the cost profile's estimates, armvirt/profiles/*.toml).
"""
from __future__ import annotations

import os
import struct
from typing import Callable

from armvirt.devices.virtqueue import ChainError, DmaError, GuestMemory, Virtqueue

VIRTIO_ID_BLOCK = 2
QUEUE_SIZE = 256                  # QEMU virtio-blk queue-size default
SECTOR = 512

VIRTIO_BLK_F_SEG_MAX, VIRTIO_BLK_F_RO, VIRTIO_BLK_F_BLK_SIZE, VIRTIO_BLK_F_FLUSH = 2, 5, 6, 9
VIRTIO_F_VERSION_1 = 32

VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT, VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID = 0, 1, 4, 8
VIRTIO_BLK_S_OK, VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_UNSUPP = 0, 1, 2
VIRTIO_BLK_ID_BYTES = 20
HEADER = struct.Struct("<IIQ")
PAGE = 4096

# struct virtio_blk_config (5.2.4): what this device fills in, by offset; the rest reads 0
# up to CONFIG_LEN (num_queues included: 1), all ones past it (QEMU's modern config reads).
CONFIG_LEN = 36


class VirtioBlk:
    device_id = VIRTIO_ID_BLOCK

    def __init__(self, path: str, readonly: bool = False, mem: GuestMemory | None = None,
                 log: Callable[[str], None] = lambda msg: None,
                 charge: Callable[[str, str], None] = lambda key, what: None):
        self.path, self.readonly, self.mem, self.log, self.charge = path, readonly, mem, log, charge
        self.fd = os.open(path, os.O_RDONLY if readonly else os.O_RDWR)
        self.size = os.fstat(self.fd).st_size
        self.capacity = self.size // SECTOR        # QEMU: the image's length in whole sectors
        self.features = (1 << VIRTIO_F_VERSION_1 | 1 << VIRTIO_BLK_F_SEG_MAX | 1 << VIRTIO_BLK_F_BLK_SIZE
                         | 1 << VIRTIO_BLK_F_FLUSH | (1 << VIRTIO_BLK_F_RO if readonly else 0))
        self.queues = [Virtqueue(QUEUE_SIZE)]
        self.config = struct.pack("<QIIHBBIBBHIBBH", self.capacity, 0, QUEUE_SIZE - 2, 0, 0, 0, SECTOR,
                                  0, 0, 0, 0, 0, 0, 1)[:CONFIG_LEN]
        self.reset()

    def close(self) -> None:
        os.close(self.fd)

    def reset(self) -> None:
        self.negotiated = 0
        self.broken = False
        for q in self.queues:
            q.reset()

    def set_features(self, features: int) -> None:
        self.negotiated = features

    # --- configuration space ---------------------------------------------------------
    def config_read(self, offset: int, size: int) -> int:
        if size not in (1, 2, 4) or offset + size > CONFIG_LEN:
            return (1 << 8 * size) - 1 if size in (1, 2, 4) else 0
        return int.from_bytes(self.config[offset:offset + size], "little")

    def config_write(self, offset: int, size: int, value: int) -> None:
        # writeback (VIRTIO_BLK_F_CONFIG_WCE) is not offered: nothing is writable
        self.log(f"virtio-blk: config write of {value:#x} at offset {offset:#x} ignored "
                 f"(no writable field is offered)")

    # --- requests ----------------------------------------------------------------------
    def process(self, index: int) -> bool:
        """QueueNotify(index): run every available request (QEMU
        virtio_blk_handle_output); True when the driver wants the interrupt."""
        if index >= len(self.queues):
            self.log(f"virtio-blk: QueueNotify of queue {index}: the device has {len(self.queues)}")
            return False
        q, mem = self.queues[index], self.mem
        if not q.ready or self.broken:
            return False
        done = False
        while True:
            try:
                chain = q.pop(mem, lambda: self.charge("virtqueue_desc", "virtqueue_pop: read a descriptor"))
            except ChainError as e:
                self.log(f"virtio-blk: {e}")
                self.broken = True              # QEMU virtio_error: the device needs a reset
                break
            except DmaError as e:
                self.log(f"virtio-blk: virtqueue rings of queue {index}: {e}")
                self.broken = True
                break
            if chain is None:
                break
            self.charge("virtio_blk_request", "virtio-blk: decode the request, complete it (virtqueue_push)")
            written = self._request(chain)
            try:
                q.push(mem, chain.head, written)
            except DmaError as e:
                self.log(f"virtio-blk: used ring of queue {index}: {e}")
                self.broken = True
                break
            done = True
        try:
            return done and q.wants_interrupt(mem)
        except DmaError:
            return done

    def _request(self, chain) -> int:
        """Do one request; returns the used length (bytes written to the chain)."""
        out, ins = chain.readable, chain.writable
        if not ins or ins[-1].len < 1:
            self.log(f"virtio-blk: request at descriptor {chain.head} has no status byte (dropped)")
            return 0
        status_buf = ins[-1]
        status_addr = status_buf.addr + status_buf.len - 1
        data_in = ins[:-1] + ([type(status_buf)(status_buf.addr, status_buf.len - 1, True)]
                              if status_buf.len > 1 else [])
        written = 0
        try:
            hdr = self._gather(out, HEADER.size)
            if len(hdr) < HEADER.size:
                raise _IoError(f"request header is {len(hdr)} bytes, not {HEADER.size}")
            rtype, _, sector = HEADER.unpack(hdr)
            if rtype == VIRTIO_BLK_T_IN:
                n = sum(b.len for b in data_in)
                self._check_range(sector, n, "read")
                self.charge("blk_file_io", "host: preadv of the image file")
                data = os.pread(self.fd, n, sector * SECTOR)
                self._copy_charge(n)
                self._scatter(data_in, data)
                written = n
                status = VIRTIO_BLK_S_OK
            elif rtype == VIRTIO_BLK_T_OUT:
                data = self._gather(out, None)[HEADER.size:]
                if self.readonly:
                    raise _IoError(f"write of {len(data)} bytes at sector {sector}: the drive is read-only")
                self._check_range(sector, len(data), "write")
                self.charge("blk_file_io", "host: pwritev of the image file")
                self._copy_charge(len(data))
                os.pwrite(self.fd, data, sector * SECTOR)
                status = VIRTIO_BLK_S_OK
            elif rtype == VIRTIO_BLK_T_FLUSH:
                self.charge("blk_flush", "host: fdatasync of the image file")
                if not self.readonly:
                    os.fdatasync(self.fd)
                status = VIRTIO_BLK_S_OK
            elif rtype == VIRTIO_BLK_T_GET_ID:
                n = min(VIRTIO_BLK_ID_BYTES, sum(b.len for b in data_in))
                self._scatter(data_in, bytes(n))
                written = n
                status = VIRTIO_BLK_S_OK
            else:
                status = VIRTIO_BLK_S_UNSUPP
        except _IoError as e:
            self.log(f"virtio-blk: request at descriptor {chain.head}: {e}: VIRTIO_BLK_S_IOERR")
            status = VIRTIO_BLK_S_IOERR
        except DmaError as e:
            self.log(f"virtio-blk: request at descriptor {chain.head}: {e}: VIRTIO_BLK_S_IOERR")
            status = VIRTIO_BLK_S_IOERR
        except OSError as e:                  # the host's I/O failed (QEMU: werror/rerror=report)
            self.log(f"virtio-blk: request at descriptor {chain.head}: {self.path}: {e.strerror or e}: "
                     f"VIRTIO_BLK_S_IOERR")
            status = VIRTIO_BLK_S_IOERR
        try:
            self.mem.write(status_addr, bytes([status]))
        except DmaError as e:
            self.log(f"virtio-blk: request at descriptor {chain.head}: status byte: {e} (dropped)")
            return 0
        return written + 1

    def _check_range(self, sector: int, n: int, what: str) -> None:
        """QEMU virtio_blk_sect_range_ok: whole sectors, inside the capacity."""
        if n % SECTOR:
            raise _IoError(f"{what} of {n} bytes at sector {sector}: not a whole number of {SECTOR}-byte sectors")
        if sector > self.capacity or sector + n // SECTOR > self.capacity:
            raise _IoError(f"{what} of {n // SECTOR} sectors at sector {sector}: past the capacity "
                           f"({self.capacity} sectors)")

    def _copy_charge(self, n: int) -> None:
        for _ in range(-(-n // PAGE)):
            self.charge("blk_copy_page", "host kernel: copy a page between the page cache and guest RAM")

    def _gather(self, bufs, limit: int | None) -> bytes:
        """The bytes of device-readable buffers, in order (up to `limit`)."""
        out = bytearray()
        for b in bufs:
            n = b.len if limit is None else min(b.len, limit - len(out))
            out += self.mem.read(b.addr, n)
            if limit is not None and len(out) >= limit:
                break
        return bytes(out)

    def _scatter(self, bufs, data: bytes) -> None:
        pos = 0
        for b in bufs:
            if pos >= len(data):
                break
            chunk = data[pos:pos + b.len]
            self.mem.write(b.addr, chunk)
            pos += len(chunk)


class _IoError(Exception):
    """The request fails with VIRTIO_BLK_S_IOERR."""
