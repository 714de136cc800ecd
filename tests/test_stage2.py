"""Stage-2 tables: descriptor format, walks, VMIDs, and isolation in the engine."""
import mmap

import pytest

from el2 import stage2 as s2
from el2.vmid import VmidAllocator

BASE = 0x80_0000_0000


def tables(vmid=1):
    return s2.Stage2Tables(s2.PagePool(mmap.mmap(-1, 1 << 20), BASE), vmid)


def test_map_and_walk():
    t = tables()
    t.map_page(0x4000_0000, 0x10_0000_0000)
    w = t.walk(0x4000_0123)
    assert w.pa == 0x10_0000_0123 and w.level == 3, f"expected PA 0x1000000123 at L3, got {w}"
    assert w.writable


def test_descriptor_bits_follow_arm_arm():
    d = s2.page_descriptor(0x1234_5000, writable=False, executable=False, device=True)
    assert d & 3 == 3, "level-3 page descriptor has bits[1:0] = 0b11"
    assert d & s2.AF, "access flag set"
    assert (d >> 6) & 3 == 1, f"S2AP read-only expected 0b01, got {(d >> 6) & 3:#b}"
    assert (d >> 2) & 0xF == 1, "device-nGnRE MemAttr 0b0001"
    assert d & s2.S2_XN
    assert d & s2.OA_MASK == 0x1234_5000


def test_unmapped_and_out_of_range():
    t = tables()
    assert t.walk(0x4000_0000).pa is None
    assert t.walk(1 << 39).pa is None and t.walk(1 << 39).level == 0
    with pytest.raises(ValueError):
        t.map_page(1 << 39, 0)


def test_unmap():
    t = tables()
    t.map_page(0x4000_1000, 0x1000)
    assert t.mapped_pages == 1
    assert t.unmap_page(0x4000_1000)
    assert t.walk(0x4000_1000).pa is None and t.mapped_pages == 0


def test_vttbr_carries_vmid_and_root():
    t = tables(vmid=7)
    assert t.vttbr >> 48 == 7 and t.vttbr & s2.OA_MASK == t.root


def test_vtcr_fields():
    v = s2.VTCR_VALUE
    assert (v & 0x3F, (v >> 6) & 3, (v >> 14) & 3, (v >> 16) & 7) == (25, 1, 0, 2), f"VTCR {v:#x}"


def test_vmids_are_unique():
    a = VmidAllocator()
    ids = [a.alloc() for _ in range(10)]
    assert len(set(ids)) == 10 and 0 not in ids, f"got {ids}"
