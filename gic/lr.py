"""GICv2 list registers (IHI 0048B, 5.3.15 GICH_LRn), encoded and decoded by pure functions."""
from __future__ import annotations

from dataclasses import dataclass

LR_STATE_INVALID, LR_STATE_PENDING, LR_STATE_ACTIVE, LR_STATE_PENDING_ACTIVE = 0, 1, 2, 3
LR_HW = 1 << 31
LR_GRP1 = 1 << 30
LR_EOI = 1 << 19          # HW == 0: request a maintenance interrupt on EOI


@dataclass(frozen=True)
class ListReg:
    vintid: int
    state: int = LR_STATE_INVALID
    priority: int = 0          # 8-bit priority; GICH_LR holds bits [7:3]
    hw: bool = False
    pintid: int = 0            # HW == 1: physical INTID deactivated by the guest's EOI
    source_cpu: int = 0        # HW == 0, SGIs: the requesting CPU
    eoi: bool = False          # HW == 0: maintenance interrupt on EOI
    group1: bool = False

    def encode(self) -> int:
        v = (self.vintid & 0x3FF) | ((self.priority >> 3) & 0x1F) << 23 | (self.state & 3) << 28
        if self.group1:
            v |= LR_GRP1
        if self.hw:
            v |= LR_HW | (self.pintid & 0x3FF) << 10
        else:
            v |= (self.source_cpu & 7) << 10 | (LR_EOI if self.eoi else 0)
        return v

    @classmethod
    def decode(cls, v: int) -> "ListReg":
        hw = bool(v & LR_HW)
        return cls(vintid=v & 0x3FF, state=(v >> 28) & 3, priority=((v >> 23) & 0x1F) << 3, hw=hw,
                   pintid=(v >> 10) & 0x3FF if hw else 0, source_cpu=0 if hw else (v >> 10) & 7,
                   eoi=not hw and bool(v & LR_EOI), group1=bool(v & LR_GRP1))


def lr_empty(v: int) -> bool:
    """ELRSR: an LR is usable when it holds no interrupt and no EOI maintenance request."""
    return (v >> 28) & 3 == LR_STATE_INVALID and (bool(v & LR_HW) or not v & LR_EOI)


def lr_eoi_maintenance(v: int) -> bool:
    """EISR: the interrupt was EOIed and the LR asked for maintenance on EOI."""
    return (v >> 28) & 3 == LR_STATE_INVALID and not v & LR_HW and bool(v & LR_EOI)
