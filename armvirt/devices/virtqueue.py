"""The split virtqueue (virtio 1.2 section 2.7; 1.1 section 2.6), the device's side: read
the driver's available ring, walk each descriptor chain, hand the buffers to the device,
write the used ring.  QEMU's hw/virtio/virtio.c (virtqueue_pop / virtqueue_push) is the
behavioural reference; VIRTIO_F_EVENT_IDX and VIRTIO_F_INDIRECT_DESC are not offered, so
neither is here.

Guest memory is reached as a VMM reaches it: an IPA is looked up in the VM's memory slots
(KVM_SET_USER_MEMORY_REGION) and read or written in the slot's host backing, never through
stage 2.  An IPA no slot holds (or a write to a read-only slot) raises DmaError; the device
decides what the request's status becomes.

Layout (2.7.5, 2.7.6, 2.7.8), little-endian:
    descriptor table  struct virtq_desc { le64 addr; le32 len; le16 flags; le16 next; } [num]
    available ring    le16 flags; le16 idx; le16 ring[num]; (le16 used_event: EVENT_IDX only)
    used ring         le16 flags; le16 idx; struct { le32 id; le32 len; } ring[num]
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Callable

VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE, VIRTQ_DESC_F_INDIRECT = 1, 2, 4
VIRTQ_AVAIL_F_NO_INTERRUPT = 1
DESC_SIZE = 16
_DESC = struct.Struct("<QIHH")


class DmaError(Exception):
    """A guest address the device cannot reach (no memory slot, or a read-only one)."""


class ChainError(Exception):
    """A malformed descriptor chain (an index past the table, a loop, an indirect
    descriptor, a device-readable buffer after a device-writable one)."""


class GuestMemory:
    """Guest physical memory through the VM's memory slots (`slots.find(ipa)` -> a MemSlot
    with ipa, size, buf, readonly; `buf` is the memory the engines execute from).
    `written(slot, offset, n)`: told of each write into guest RAM (the machine drops
    translated code then: armvirt/machine.py Machine._virtio_blk)."""

    def __init__(self, slots, written: Callable[[object, int, int], None] = lambda slot, off, n: None):
        self.slots, self.written = slots, written

    def _slot(self, ipa: int, n: int, write: bool):
        s = self.slots.find(ipa)
        if s is None or ipa + n > s.ipa + s.size:
            raise DmaError(f"IPA {ipa:#x}+{n:#x} is outside guest RAM (no memory slot)")
        if write and s.readonly:
            raise DmaError(f"IPA {ipa:#x}+{n:#x} is read-only memory")
        return s

    def read(self, ipa: int, n: int) -> bytes:
        if n == 0:
            return b""
        s = self._slot(ipa, n, False)
        off = ipa - s.ipa
        return bytes(s.buf[off:off + n])

    def write(self, ipa: int, data: bytes) -> None:
        if not data:
            return
        s = self._slot(ipa, len(data), True)
        off = ipa - s.ipa
        s.buf[off:off + len(data)] = data
        self.written(s, off, len(data))

    def u16(self, ipa: int) -> int:
        return int.from_bytes(self.read(ipa, 2), "little")

    def put_u16(self, ipa: int, v: int) -> None:
        self.write(ipa, (v & 0xFFFF).to_bytes(2, "little"))


@dataclass(frozen=True)
class Buffer:
    """One descriptor: a guest buffer, device-readable or device-writable."""
    addr: int
    len: int
    write: bool


@dataclass
class Chain:
    """A popped descriptor chain: its head index (the used element's id) and buffers."""
    head: int
    bufs: list[Buffer] = field(default_factory=list)

    @property
    def readable(self) -> list[Buffer]:
        return [b for b in self.bufs if not b.write]

    @property
    def writable(self) -> list[Buffer]:
        return [b for b in self.bufs if b.write]


class Virtqueue:
    """One split virtqueue as the transport configured it (QueueNum, QueueDesc,
    QueueDriver, QueueDevice, QueueReady).  `last_avail` is the device's shadow of the
    available index (free-running, wrapping at 2^16 as the spec's idx does)."""

    def __init__(self, num_max: int):
        self.num_max = num_max
        self.reset()

    def reset(self) -> None:
        self.num = self.num_max
        self.desc = self.driver = self.device = 0
        self.ready = False
        self.last_avail = self.used_idx = 0

    # ring addresses
    def _avail_idx_addr(self) -> int:
        return self.driver + 2

    def _avail_ring(self, i: int) -> int:
        return self.driver + 4 + 2 * (i % self.num)

    def _used_elem(self, i: int) -> int:
        return self.device + 4 + 8 * (i % self.num)

    def pending(self, mem: GuestMemory) -> int:
        """Chains the driver made available and the device has not popped."""
        return (mem.u16(self._avail_idx_addr()) - self.last_avail) & 0xFFFF

    def pop(self, mem: GuestMemory, on_desc: Callable[[], None] = lambda: None) -> Chain | None:
        """The next available chain (virtqueue_pop), or None.  `on_desc` is called per
        descriptor read (its cost).  Raises DmaError for rings outside RAM, ChainError
        for a malformed chain (the head is consumed either way: `last_avail` moved)."""
        if not self.pending(mem):
            return None
        if self.pending(mem) > self.num:
            raise ChainError(f"available index moved {self.pending(mem)} past the device's, "
                             f"more than the queue's {self.num} entries")
        head = mem.u16(self._avail_ring(self.last_avail))
        self.last_avail = (self.last_avail + 1) & 0xFFFF
        if head >= self.num:
            raise ChainError(f"available ring names descriptor {head}, the table has {self.num}")
        chain, i, seen_write = Chain(head), head, False
        for _ in range(self.num):
            on_desc()
            addr, length, flags, nxt = _DESC.unpack(mem.read(self.desc + DESC_SIZE * i, DESC_SIZE))
            if flags & VIRTQ_DESC_F_INDIRECT:
                raise ChainError(f"descriptor {i} is indirect (VIRTIO_F_INDIRECT_DESC was not offered)")
            w = bool(flags & VIRTQ_DESC_F_WRITE)
            if seen_write and not w:
                raise ChainError(f"descriptor {i} is device-readable after a device-writable one "
                                 f"(2.7.4.2: readable buffers come first)")
            seen_write |= w
            chain.bufs.append(Buffer(addr, length, w))
            if not flags & VIRTQ_DESC_F_NEXT:
                return chain
            if nxt >= self.num:
                raise ChainError(f"descriptor {i} chains to {nxt}, the table has {self.num}")
            i = nxt
        raise ChainError(f"the chain from descriptor {head} is longer than the table ({self.num}): a loop")

    def push(self, mem: GuestMemory, head: int, written: int) -> None:
        """Put a used element (id = head, len = bytes written) and publish the used index
        (virtqueue_push: the element before the index, 2.7.8.2)."""
        mem.write(self._used_elem(self.used_idx), struct.pack("<II", head, written))
        self.used_idx = (self.used_idx + 1) & 0xFFFF
        mem.put_u16(self.device + 2, self.used_idx)

    def wants_interrupt(self, mem: GuestMemory) -> bool:
        """Without EVENT_IDX: unless the driver set VIRTQ_AVAIL_F_NO_INTERRUPT (2.7.7)."""
        return not mem.u16(self.driver) & VIRTQ_AVAIL_F_NO_INTERRUPT
