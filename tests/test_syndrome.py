"""ESR_EL2 syndromes: our constructors against the ARM ARM encodings and against
what the engine itself reports for the same trapped instruction."""
import pytest

from engine import layout
from el2 import syndrome as syn
from el2.hcr import HCR_TACR
from tests.harness import Harness, WFI, hvc, ldr_w, ldrb, ldrsh_x, movz, mrs, smc, str_x


def test_hvc_encoding_matches_arm_arm():
    # EC 0x16 in [31:26], IL in [25], imm16 in [15:0] (D17.2.37)
    assert syn.syn_aa64_hvc(0) == 0x5A000000, f"expected 0x5a000000, got {syn.syn_aa64_hvc(0):#x}"
    assert syn.syn_aa64_hvc(0x1234) == 0x5A001234


def test_sysreg_iss_fields():
    v = syn.syn_aa64_sysregtrap(op0=3, op1=0, op2=1, crn=1, crm=0, rt=3, is_read=True)
    d = syn.SysRegAccess.decode(v)
    assert syn.ec_of(v) == 0x18
    assert d.key == (3, 0, 1, 0, 1) and d.rt == 3 and d.is_read, f"decoded {d}"


@pytest.mark.parametrize("esr,size,srt,wnr,sse,sf", [
    (0x93810005, 4, 1, False, False, False),     # LDR W1 (engine-reported, stage-2 translation L1)
    (0x93820045, 4, 2, True, False, False),      # STR W2
])
def test_data_abort_decode(esr, size, srt, wnr, sse, sf):
    d = syn.DataAbort.decode(esr)
    assert (d.isv, d.size, d.srt, d.wnr, d.sse, d.sf) == (True, size, srt, wnr, sse, sf), f"decoded {d}"


def test_data_abort_constructor_matches_engine_encoding():
    built = syn.syn_data_abort_with_iss(False, sas=2, sse=False, srt=1, sf=False, ar=False, ea=False,
                                        s1ptw=False, wnr=False, dfsc=5)
    assert built == 0x93810005, f"expected 0x93810005, got {built:#x}"


def test_hvc_trap_from_engine():
    h = Harness([hvc(0x1234)])
    ex = h.next_exit()
    assert ex.esr == syn.syn_aa64_hvc(0x1234), f"expected {syn.syn_aa64_hvc(0x1234):#x}, got {ex.esr:#x}"
    assert ex.elr == h.ctx.pc, "ELR_EL2 for HVC is the next instruction"


def test_smc_trapped_by_tsc():
    h = Harness([smc(7)])
    ex = h.next_exit()
    assert ex.esr == syn.syn_aa64_smc(7), f"expected {syn.syn_aa64_smc(7):#x}, got {ex.esr:#x}"


def test_wfi_trapped_by_twi():
    h = Harness([WFI])
    ex = h.next_exit()
    want = syn.syn_wfx(cv=1, cond=0xE, ti=0)
    assert ex.esr == want, f"expected {want:#x}, got {ex.esr:#x}"


def test_sysreg_trap_by_tacr():
    h = Harness([mrs(5, 3, 0, 1, 0, 1)])          # MRS X5, ACTLR_EL1
    assert h.ctx.trap.hcr & HCR_TACR
    ex = h.next_exit()
    want = syn.syn_aa64_sysregtrap(op0=3, op1=0, op2=1, crn=1, crm=0, rt=5, is_read=True)
    assert ex.esr == want, f"expected {want:#x}, got {ex.esr:#x}"


@pytest.mark.parametrize("insn,size,sse,sf,wnr", [
    (ldr_w(1, 2), 4, False, False, False),
    (ldrb(3, 2), 1, False, False, False),
    (ldrsh_x(4, 2), 2, True, True, False),
    (str_x(5, 2), 8, False, True, True),
])
def test_stage2_mmio_abort_syndrome(insn, size, sse, sf, wnr):
    h = Harness([movz(2, layout.UART_BASE >> 16, 16), insn])
    ex = h.next_exit()
    d = syn.DataAbort.decode(ex.esr)
    assert ex.ec == syn.EC_DABT_LOW, f"expected EC 0x24, got {ex.ec:#x}"
    assert (d.isv, d.size, d.sse, d.sf, d.wnr) == (True, size, sse, sf, wnr), f"decoded {d}"
    ipa = syn.hpfar_to_ipa(ex.hpfar, ex.far)
    assert ipa == layout.UART_BASE, f"expected IPA {layout.UART_BASE:#x}, got {ipa:#x}"
