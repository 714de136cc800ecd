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


def test_block_map_and_walk():
    t = tables()
    t.map_block(0x4020_0000, 0x10_0020_0000)
    w = t.walk(0x4021_2345)
    assert (w.pa, w.level) == (0x10_0021_2345, 2), f"expected PA 0x1000212345 at L2, got {w}"
    assert w.desc & 3 == 1, f"a level-2 block descriptor has bits[1:0] = 0b01, got {w.desc & 3:#b}"
    assert (t.mapped_blocks, t.mapped_pages) == (1, 512), (t.mapped_blocks, t.mapped_pages)
    assert t.walk(0x4040_0000).pa is None, "the next 2 MiB is not mapped"


def test_block_refuses_misalignment_and_overlap():
    t = tables()
    with pytest.raises(ValueError):
        t.map_block(0x4000_1000, 0x10_0000_0000)
    with pytest.raises(ValueError):
        t.map_block(0x4000_0000, 0x10_0000_1000)
    t.map_page(0x4000_1000, 0x10_0000_1000)
    assert not t.block_free(0x4000_0000), "a page is mapped in the range: no block there"
    assert t.block_free(0x4020_0000)
    with pytest.raises(ValueError):
        t.map_block(0x4000_0000, 0x10_0000_0000)
    t.map_block(0x4020_0000, 0x10_0020_0000)
    with pytest.raises(ValueError):
        t.map_page(0x4020_3000, 0x10_0020_3000)


# --- in the engine: the core walks what user_mem_abort mapped -----------------------------
from engine import layout  # noqa: E402
from tests.harness import Harness, hvc, movz, str_x  # noqa: E402

RAM = layout.RAM_BASE
GICV_PAGES = 2                   # the virtual CPU interface, mapped at stage 2 up front (4 KB pages)


def _stores(*addrs):
    """Store x0 to each address (x1 = its upper 16 bits, shifted); then HVC."""
    code = [movz(0, 0x5A)]
    for a in addrs:
        assert a & 0xFFFF == 0, a
        code += [movz(1, a >> 16, 16), str_x(0, 1)]
    return code + [hvc(0)]


def _run(code, **kw):
    h = Harness(code, **kw)
    ex = h.next_exit()
    assert ex.ec == 0x16, f"expected the final HVC (EC 0x16), observed EC {ex.ec:#x}"
    return h


@pytest.mark.parametrize("thp,faults,blocks,pages", [(True, 3, 3, 3 * 512 + GICV_PAGES),
                                                        (False, 4, 0, 4 + GICV_PAGES)])
def test_ram_faults_in_by_block_with_thp_and_by_page_without(thp, faults, blocks, pages):
    """The code's page (block 0), two stores into block 1, one into block 2."""
    h = _run(_stores(RAM + 0x20_0000, RAM + 0x21_0000, RAM + 0x40_0000), thp=thp)
    st = h.vm.stage2
    seen = (h.vm.counters["stage2_faults"], st.mapped_blocks, st.mapped_pages)
    assert seen == (faults, blocks, pages), f"thp={thp}: expected (faults, blocks, pages) " \
                                            f"{(faults, blocks, pages)}, observed {seen}"
    off = 0x21_0000
    assert bytes(h.slot.buf[off:off + 8]) == (0x5A).to_bytes(8, "little"), "the store reached guest RAM"
    w = st.walk(RAM + off)
    assert (w.pa, w.level) == (h.slot.host_pa + off, 2 if thp else 3), f"thp={thp}: {w}"


def test_a_block_never_covers_what_is_not_ram():
    """3 MiB of RAM: block 1 would reach past its end, so it faults in by 4 KB pages;
    the IPA just past RAM stays unmapped and its access is an MMIO exit."""
    h = Harness(_stores(RAM + 0x20_0000, RAM + 0x30_0000), ram_size=3 << 20)
    ex = h.next_exit()
    st = h.vm.stage2
    assert ex.ec == 0x24 and (ex.far, st.walk(RAM + 0x30_0000).pa) == (RAM + 0x30_0000, None), \
        f"expected a data abort at {RAM + 0x30_0000:#x} with nothing mapped there, observed EC {ex.ec:#x} " \
        f"FAR {ex.far:#x}"
    assert (st.mapped_blocks, st.walk(RAM + 0x20_0000).level) == (1, 3), \
        f"expected block 0 as a block and block 1 by pages, observed {st.mapped_blocks} blocks, " \
        f"{st.walk(RAM + 0x20_0000)}"
