"""GICv2 list registers and the derived GICH registers (IHI 0048B 5.3)."""
import pytest

from gic.lr import LR_STATE_ACTIVE, LR_STATE_INVALID, LR_STATE_PENDING, ListReg
from gic.v2_hyp import GICH_ELRSR0, GICH_EISR0, GICH_LR0, GICH_MISR, GICH_VTR, HCR_UIE, GichV2, MISR_EOI, MISR_U


@pytest.mark.parametrize("lr", [
    ListReg(vintid=27, state=LR_STATE_PENDING, priority=0xA0, hw=True, pintid=27),
    ListReg(vintid=5, state=LR_STATE_ACTIVE, priority=0x08, source_cpu=3, eoi=True, group1=True),
    ListReg(vintid=1023, state=LR_STATE_INVALID),
])
def test_lr_round_trip(lr):
    assert ListReg.decode(lr.encode()) == lr, f"{lr} -> {lr.encode():#x} -> {ListReg.decode(lr.encode())}"


def test_lr_field_positions():
    v = ListReg(vintid=27, state=LR_STATE_PENDING, priority=0xF8, hw=True, pintid=30).encode()
    assert v == (1 << 31) | (30 << 10) | (0x1F << 23) | (1 << 28) | 27, f"got {v:#x}"


def test_derived_registers():
    g = GichV2(nr_lr=4)
    assert g.read(GICH_VTR) & 0x3F == 3, "VTR.ListRegs = nr_lr - 1"
    assert g.read(GICH_ELRSR0) == 0xF, "all LRs empty at reset"
    g.write(GICH_LR0, ListReg(vintid=3, state=LR_STATE_PENDING).encode())
    g.write(GICH_LR0 + 4, ListReg(vintid=4, state=LR_STATE_INVALID, eoi=True).encode())
    assert g.read(GICH_ELRSR0) == 0b1100, f"got {g.read(GICH_ELRSR0):#b}"
    assert g.read(GICH_EISR0) == 0b0010, f"got {g.read(GICH_EISR0):#b}"
    assert g.read(GICH_MISR) & MISR_EOI
    assert not g.read(GICH_MISR) & MISR_U, "underflow is gated by HCR.UIE"
    g.hcr = HCR_UIE
    assert g.read(GICH_MISR) & MISR_U, "one valid LR with UIE set signals underflow"


def test_lr_count_bounds():
    with pytest.raises(ValueError):
        GichV2(nr_lr=0)
