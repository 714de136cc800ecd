"""The debugger's stage-1 walk (ARM ARM D8.2): granules, start levels, blocks,
TTBR1, TBI, EPD and the faults, against tables built here."""
import pytest

from armvirt.gdbstub import stage1

VALID, TABLE = 1, 2


class Tables:
    """Translation tables in a sparse guest memory, built as the ARM ARM lays them out."""

    def __init__(self, granule_bits: int, insize: int, base: int = 0x10_0000):
        self.g, self.insize = granule_bits, insize
        self.stride = granule_bits - 3
        self.start = 4 - -(-(insize - granule_bits) // self.stride)
        self.mem, self.next = {}, base
        self.root = self._alloc()

    def _alloc(self) -> int:
        a = self.next
        self.next += 1 << self.g
        return a

    def _index(self, va: int, level: int) -> int:
        shift = self.g + self.stride * (3 - level)
        return (va >> shift) & ((1 << min(self.stride, self.insize - shift)) - 1)

    def map(self, va: int, oa: int, leaf_level: int = 3) -> None:
        table = self.root
        for level in range(self.start, leaf_level):
            slot = table + 8 * self._index(va, level)
            if slot not in self.mem:
                self.mem[slot] = self._alloc() | VALID | TABLE
            table = self.mem[slot] & ~((1 << self.g) - 1) & ((1 << 48) - 1)
        self.mem[table + 8 * self._index(va, leaf_level)] = oa | VALID | (TABLE if leaf_level == 3 else 0)

    def read64(self, ipa: int):
        if not 0x10_0000 <= ipa < self.next:
            return None                        # outside guest memory
        return self.mem.get(ipa, 0)


def tcr(t0sz=16, tg0=0b00, t1sz=16, tg1=0b10, epd0=0, epd1=0, tbi0=0, tbi1=0) -> int:
    return (t0sz | epd0 << 7 | tg0 << 14 | t1sz << 16 | epd1 << 23 | tg1 << 30 | tbi0 << 37 | tbi1 << 38)


def walk(t: Tables, va: int, tcr_value: int, ttbr1: int = 0, m: int = 1):
    return stage1.translate(va, m, tcr_value, t.root, ttbr1, t.read64)


@pytest.mark.parametrize("g,tg0,insize,start", [
    (12, 0b00, 48, 0), (12, 0b00, 39, 1), (12, 0b00, 30, 2),
    (14, 0b10, 47, 1), (14, 0b10, 48, 0), (16, 0b01, 42, 2), (16, 0b01, 48, 1),
])
def test_page_translation_per_granule(g, tg0, insize, start):
    t = Tables(g, insize)
    va = (0x1234_5678_9ABC & ((1 << insize) - 1)) & ~((1 << g) - 1)
    oa = 0x4000_0000 + (5 << g)
    t.map(va, oa)
    r = walk(t, va + 0x18, tcr(t0sz=64 - insize, tg0=tg0))
    assert r.ipa == oa + 0x18, f"granule {1 << g}, {insize}-bit: expected IPA {oa + 0x18:#x}, observed {r.ipa} ({r.fault})"
    assert r.steps[0][0] == start and r.level == 3, f"expected a walk from level {start} to 3, observed {r.steps}"


@pytest.mark.parametrize("level,size", [(1, 1 << 30), (2, 1 << 21)])
def test_block_descriptors_4k(level, size):
    t = Tables(12, 48)
    va, oa = 0x80_0000_0000 + 3 * size, 0x8000_0000
    t.map(va, oa, leaf_level=level)
    r = walk(t, va + 0x12345, tcr())
    assert r.ipa == oa + 0x12345 and r.level == level, \
        f"level {level} block: expected IPA {oa + 0x12345:#x} at level {level}, observed {r.ipa} at {r.level}"


def test_ttbr1_and_tbi():
    t0, t1 = Tables(12, 48), Tables(12, 48, base=0x80_0000)
    t1.map(0xFFFF_0000_1234_5000, 0x4800_0000)
    t0.map(0x0000_0000_4000_0000, 0x4100_0000)
    r = stage1.translate(0xFFFF_0000_1234_5678, 1, tcr(), t0.root, t1.root,
                         lambda a: t1.read64(a) if a >= 0x80_0000 else t0.read64(a))
    assert r.ipa == 0x4800_0678, f"TTBR1 walk: expected 0x48000678, observed {r.ipa} ({r.fault})"
    tagged = 0xAB00_0000_4000_0010
    r = walk(t0, tagged, tcr(tbi0=1))
    assert r.ipa == 0x4100_0010, f"TBI0: the top byte is ignored, expected 0x41000010, observed {r.ipa} ({r.fault})"
    r = walk(t0, tagged, tcr(tbi0=0))
    assert r.ipa is None and "outside" in r.fault, f"without TBI0 a tagged VA faults, observed {r}"


@pytest.mark.parametrize("va,tcr_value,needle", [
    (0x0000_7000_0000_0000, tcr(), "translation fault"),          # nothing mapped there
    (0x0001_0000_0000_0000, tcr(), "outside"),                     # above the 48-bit TTBR0 range
    (0x4000_0000, tcr(epd0=1), "disabled"),
    (0x4000_0000, tcr(tg0=0b11), "reserved"),
])
def test_faults(va, tcr_value, needle):
    t = Tables(12, 48)
    t.map(0x4000_0000, 0x4100_0000)
    r = walk(t, va, tcr_value)
    assert r.ipa is None and needle in r.fault, f"VA {va:#x}: expected a fault with {needle!r}, observed {r}"


def test_table_outside_guest_memory_and_mmu_off():
    t = Tables(12, 48)
    t.mem[t.root] = 0xDEAD_0000 | VALID | TABLE          # next table where no RAM is
    r = walk(t, 0x1000, tcr())
    assert r.ipa is None and "not in guest memory" in r.fault, f"observed {r}"
    r = walk(t, 0x4008_0000, tcr(), m=0)
    assert r.ipa == 0x4008_0000, f"MMU off: VA = IPA, observed {r.ipa}"
