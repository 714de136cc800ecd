"""Stage-2 translation tables (ARM ARM D8.3, VMSAv8-64 descriptors, 4 KB granule).

The tables are real: they live in host physical memory that no guest IPA maps,
and the engine's own walker reads them through VTTBR_EL2/VTCR_EL2 on every TLB
miss.  A 39-bit IPA space (VTCR_EL2.T0SZ = 25) starts the walk at level 1 with
one 4 KB table, as KVM does for a 39-bit VM.  RAM backed by transparent huge pages
is mapped with level-2 block descriptors of 2 MiB, as KVM's user_mem_abort does
(ARM ARM D8.3.1: a block descriptor at level 2 of a 4 KB granule maps 2 MiB).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Optional

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
BLOCK_SHIFT = PAGE_SHIFT + 9        # a level-2 entry: 2 MiB
BLOCK_SIZE = 1 << BLOCK_SHIFT
PAGES_PER_BLOCK = BLOCK_SIZE // PAGE_SIZE
IPA_BITS = 39
LEVELS = (1, 2, 3)

DESC_VALID = 1 << 0
DESC_TABLE = 1 << 1                 # table (levels 0-2) or page (level 3); clear: a block
S2_MEMATTR_NORMAL_WB = 0xF << 2     # MemAttr[5:2] = 0b1111
S2_MEMATTR_DEVICE_nGnRE = 0x1 << 2
S2AP_R = 1 << 6
S2AP_W = 1 << 7
SH_INNER = 3 << 8
AF = 1 << 10
S2_XN = 1 << 54
OA_MASK = ((1 << 48) - 1) & ~(PAGE_SIZE - 1)

# VTCR_EL2 (ARM ARM D17.2.168): T0SZ=25, SL0=1 (start at level 1), inner/outer WBWA,
# inner shareable, 4 KB granule, PS=0b010 (40-bit PA), RES1 bit 31.
VTCR_VALUE = 25 | (1 << 6) | (1 << 8) | (1 << 10) | (3 << 12) | (0 << 14) | (2 << 16) | (1 << 31)


class PagePool:
    """Host-private physical pages for page tables (never mapped for a guest)."""

    def __init__(self, buf, base_pa: int):
        self.buf, self.base, self.next = buf, base_pa, 0

    def alloc(self) -> int:
        if self.next + PAGE_SIZE > len(self.buf):
            raise MemoryError("host page-table pool exhausted")
        pa = self.base + self.next
        self.next += PAGE_SIZE
        self.buf[pa - self.base: pa - self.base + PAGE_SIZE] = bytes(PAGE_SIZE)
        return pa

    def read64(self, pa: int) -> int:
        return struct.unpack_from("<Q", self.buf, pa - self.base)[0]

    def write64(self, pa: int, value: int) -> None:
        struct.pack_into("<Q", self.buf, pa - self.base, value)


@dataclass(frozen=True)
class Walk:
    """Result of a software walk: the output address or the level of the fault."""
    pa: Optional[int]
    level: int
    desc: int = 0

    @property
    def writable(self) -> bool:
        return bool(self.desc & S2AP_W)


def page_descriptor(pa: int, *, writable: bool, executable: bool, device: bool) -> int:
    return _leaf(pa & OA_MASK, writable, executable, device) | DESC_TABLE


def block_descriptor(pa: int, *, writable: bool = True, executable: bool = True) -> int:
    """A level-2 block (bit 1 clear) of normal memory: OA[47:21] (D8.3.1)."""
    return _leaf(pa & OA_MASK & ~(BLOCK_SIZE - 1), writable, executable, False)


def _leaf(oa: int, writable: bool, executable: bool, device: bool) -> int:
    d = oa | DESC_VALID | AF | S2AP_R | SH_INNER
    d |= S2_MEMATTR_DEVICE_nGnRE if device else S2_MEMATTR_NORMAL_WB
    if writable:
        d |= S2AP_W
    if not executable:
        d |= S2_XN
    return d


def _index(ipa: int, level: int) -> int:
    return (ipa >> (PAGE_SHIFT + 9 * (3 - level))) & 0x1FF


class Stage2Tables:
    def __init__(self, pool: PagePool, vmid: int):
        self.pool = pool
        self.vmid = vmid
        self.root = pool.alloc()
        self.mapped_pages = 0           # 4 KB pages mapped, those in blocks included
        self.mapped_blocks = 0

    @property
    def vttbr(self) -> int:
        """VTTBR_EL2: VMID[55:48] | BADDR."""
        return (self.vmid << 48) | self.root

    @staticmethod
    def in_range(ipa: int) -> bool:
        return 0 <= ipa < (1 << IPA_BITS)

    def _slot(self, ipa: int, level: int, create: bool) -> Optional[int]:
        """The descriptor slot for `ipa` at `level` (tables created on the way if
        `create`); None if a table is missing or a block covers it."""
        table = self.root
        for lvl in range(1, level):
            slot = table + 8 * _index(ipa, lvl)
            d = self.pool.read64(slot)
            if not d & DESC_VALID:
                if not create:
                    return None
                nxt = self.pool.alloc()
                self.pool.write64(slot, nxt | DESC_VALID | DESC_TABLE)
                d = nxt | DESC_VALID | DESC_TABLE
            elif not d & DESC_TABLE:
                if create:
                    raise ValueError(f"IPA {ipa:#x} is already mapped by a block")
                return None
            table = d & OA_MASK
        return table + 8 * _index(ipa, level)

    def _leaf_slot(self, ipa: int, create: bool) -> Optional[int]:
        return self._slot(ipa, 3, create)

    def map_page(self, ipa: int, pa: int, *, writable: bool = True, executable: bool = True,
                 device: bool = False) -> None:
        if not self.in_range(ipa):
            raise ValueError(f"IPA {ipa:#x} is outside the {IPA_BITS}-bit IPA space")
        slot = self._leaf_slot(ipa, create=True)
        if not self.pool.read64(slot) & DESC_VALID:
            self.mapped_pages += 1
        self.pool.write64(slot, page_descriptor(pa, writable=writable, executable=executable,
                                                device=device))

    def block_free(self, ipa: int) -> bool:
        """Nothing is mapped yet in the 2 MiB range holding `ipa` (no table, no block)."""
        d = self.pool.read64(self.root + 8 * _index(ipa, 1))
        if not d & DESC_VALID:
            return True
        return bool(d & DESC_TABLE) and not self.pool.read64((d & OA_MASK) + 8 * _index(ipa, 2)) & DESC_VALID

    def map_block(self, ipa: int, pa: int, *, writable: bool = True) -> None:
        """Map the 2 MiB block of RAM holding `ipa` to the one holding `pa` (both 2 MiB
        aligned: the caller checks the whole block is RAM of one memory slot);
        `writable` False for a read-only memory slot."""
        if ipa & (BLOCK_SIZE - 1) or pa & (BLOCK_SIZE - 1):
            raise ValueError(f"block IPA {ipa:#x} / PA {pa:#x} not 2 MiB aligned")
        if not self.in_range(ipa):
            raise ValueError(f"IPA {ipa:#x} is outside the {IPA_BITS}-bit IPA space")
        slot = self._slot(ipa, 2, create=True)
        d = self.pool.read64(slot)
        if d & DESC_VALID:
            # KVM replaces a table of pages by the block (stage2_map_walk_table_pre);
            # here RAM is mapped one way or the other for a VM's whole life.
            raise ValueError(f"IPA {ipa:#x}: the 2 MiB range is already mapped")
        self.pool.write64(slot, block_descriptor(pa, writable=writable))
        self.mapped_blocks += 1
        self.mapped_pages += PAGES_PER_BLOCK

    def unmap_page(self, ipa: int) -> bool:
        """Remove a mapping; the caller must invalidate TLBs (TLBI IPAS2E1IS)."""
        slot = self._leaf_slot(ipa, create=False)
        if slot is None or not self.pool.read64(slot) & DESC_VALID:
            return False
        self.pool.write64(slot, 0)
        self.mapped_pages -= 1
        return True

    def unmap_range(self, ipa: int, size: int) -> int:
        """Remove every page and block mapping in [ipa, ipa+size) (both 2 MiB aligned), as
        KVM's kvm_arch_flush_shadow_memslot does for a deleted memory slot; tables stay
        allocated.  Returns the 4 KB pages unmapped; the caller invalidates TLBs."""
        if ipa & (BLOCK_SIZE - 1) or size & (BLOCK_SIZE - 1):
            raise ValueError(f"unmap_range {ipa:#x}+{size:#x}: not 2 MiB aligned")
        gone = 0
        for block in range(ipa, ipa + size, BLOCK_SIZE):
            slot = self._slot(block, 2, create=False)
            if slot is None:
                continue
            d = self.pool.read64(slot)
            if not d & DESC_VALID:
                continue
            if not d & DESC_TABLE:               # a 2 MiB block
                self.pool.write64(slot, 0)
                self.mapped_blocks -= 1
                gone += PAGES_PER_BLOCK
                continue
            table = d & OA_MASK
            for i in range(PAGES_PER_BLOCK):
                if self.pool.read64(table + 8 * i) & DESC_VALID:
                    self.pool.write64(table + 8 * i, 0)
                    gone += 1
        self.mapped_pages -= gone
        return gone

    def walk(self, ipa: int) -> Walk:
        """Software walk, as the hardware does it (for the host's own checks and tests)."""
        if not self.in_range(ipa):
            return Walk(None, 0)
        table = self.root
        for level in LEVELS:
            d = self.pool.read64(table + 8 * _index(ipa, level))
            if not d & DESC_VALID:
                return Walk(None, level)
            if level == 3 or not d & DESC_TABLE:
                if level == 1:  # 1 GiB blocks are never created by this builder
                    return Walk(None, level, d)
                size = PAGE_SIZE if level == 3 else BLOCK_SIZE
                return Walk((d & OA_MASK & ~(size - 1)) | (ipa & (size - 1)), level, d)
            table = d & OA_MASK
        raise AssertionError("unreachable")
