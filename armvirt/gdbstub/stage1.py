"""The guest's stage-1 translation, EL1&0 regime, done in software for the debugger
(ARM ARM D8.2, "Translation process", VMSAv8-64): TTBR0_EL1/TTBR1_EL1 selected by
the top VA bits, TCR_EL1's T0SZ/T1SZ, TG0/TG1 (4 KB, 16 KB, 64 KB granules), EPD0/1
and TBI0/1, table, block and page descriptors.  Permissions are not checked: a
debugger reads what the mapping points at.  The walk has no side effects (no
access flag or TLB update), unlike asking the engine to translate."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

OA_MASK = (1 << 48) - 1
SCTLR_M = 1 << 0
# TCR_EL1 (D17.2.131): TG0 encodings differ from TG1's.
TG0_BITS = {0b00: 12, 0b01: 16, 0b10: 14}
TG1_BITS = {0b10: 12, 0b11: 16, 0b01: 14}


@dataclass
class Translation:
    va: int
    ipa: Optional[int]                 # None: translation fault
    level: int = 0                     # where the walk ended
    fault: str = ""
    steps: list = field(default_factory=list)   # (level, descriptor address, descriptor)


def _region(va: int, tcr: int, ttbr0: int, ttbr1: int):
    """(TTBR, input size, granule bits) for `va`, or a reason it has none."""
    upper = (va >> 55) & 1
    if upper:
        tsz, epd, tbi, granule, ttbr = tcr >> 16 & 0x3F, tcr >> 23 & 1, tcr >> 38 & 1, \
            TG1_BITS.get(tcr >> 30 & 3), ttbr1
    else:
        tsz, epd, tbi, granule, ttbr = tcr & 0x3F, tcr >> 7 & 1, tcr >> 37 & 1, \
            TG0_BITS.get(tcr >> 14 & 3), ttbr0
    if granule is None:
        return f"reserved TG{upper} encoding"
    insize = 64 - tsz
    top = 56 if tbi else 64                    # TBI: bits [63:56] are ignored
    high = (va >> insize) & ((1 << (top - insize)) - 1)
    if high != (((1 << (top - insize)) - 1) if upper else 0):
        return f"VA outside the TTBR{upper} range (T{upper}SZ={tsz})"
    if epd:
        return f"walks through TTBR{upper} are disabled (EPD{upper})"
    return ttbr, insize, granule


def translate(va: int, sctlr: int, tcr: int, ttbr0: int, ttbr1: int,
              read64: Callable[[int], Optional[int]]) -> Translation:
    """`read64(ipa)`: a descriptor from guest memory, or None when nothing backs the IPA."""
    va &= (1 << 64) - 1
    if not sctlr & SCTLR_M:
        return Translation(va, va)             # MMU off: flat (VA = IPA)
    region = _region(va, tcr, ttbr0, ttbr1)
    if isinstance(region, str):
        return Translation(va, None, 0, region)
    ttbr, insize, g = region
    stride = g - 3
    level = 4 - -(-(insize - g) // stride)     # first level: ceil((insize - g) / stride) levels
    table = ttbr & OA_MASK & ~1                # BADDR; bit 0 is CnP, [63:48] the ASID
    t = Translation(va, None, level)
    while True:
        shift = g + stride * (3 - level)
        bits = min(stride, insize - shift)
        index = (va >> shift) & ((1 << bits) - 1)
        addr = table + 8 * index
        desc = read64(addr)
        t.level = level
        if desc is None:
            t.fault = f"level {level} table at IPA {table:#x} is not in guest memory"
            return t
        t.steps.append((level, addr, desc))
        if not desc & 1:
            t.fault = f"level {level} translation fault"
            return t
        is_table = desc & 2
        if level == 3:
            if not is_table:
                t.fault = "level 3 reserved descriptor"
                return t
            t.ipa = (desc & OA_MASK & ~((1 << g) - 1)) | (va & ((1 << g) - 1))
            return t
        if not is_table:                       # a block at level 1 or 2
            if level == 0 or (level == 1 and g != 12):
                t.fault = f"level {level} block descriptor (not allowed with this granule)"
                return t
            t.ipa = (desc & OA_MASK & ~((1 << shift) - 1)) | (va & ((1 << shift) - 1))
            return t
        table = desc & OA_MASK & ~((1 << g) - 1)
        level += 1
