"""The engine's exception entry to EL1 (ARM ARM D1.10): the stack pointer is banked
as AArch64.TakeException does, and the core's own ERET banks it back."""
import pytest

from engine import layout
from tests.harness import ENTRY, Harness, hvc, movz

VBAR = layout.RAM_BASE + 0x10000
EL0_CODE = ENTRY + 0x100
KERNEL_SP, ENTRY_SP_EL0, USER_SP = 0x4100_0000, 0x4200_0000, 0x4300_0000
SVC0, ERET, ISB, UDF = 0xD4000001, 0xD69F03E0, 0xD5033FDF, 0x00000000


def movk(rd, imm16, shift):
    return 0xF2800000 | (shift // 16) << 21 | imm16 << 5 | rd


def mov_sp_from(rn):        # MOV SP, Xn
    return 0x9100001F | rn << 5


def mov_from_sp(rd):        # MOV Xd, SP
    return 0x910003E0 | rd


def load(rd, value):
    return [movz(rd, value & 0xFFFF), movk(rd, value >> 16 & 0xFFFF, 16)]


MRS_X13_SP_EL0 = 0xD538410D
MSR_SP_EL0_X1, MSR_ELR_EL1_X2, MSR_SPSR_EL1_X4, MSR_VBAR_EL1_X3 = 0xD5184101, 0xD5184022, 0xD5184004, 0xD518C003


def boot(spsr: int, lower: list[int]):
    """EL1h sets SP_EL1, SP_EL0, VBAR and ERETs to `lower` in mode `spsr`."""
    code = (load(0, KERNEL_SP) + [mov_sp_from(0)] + load(1, ENTRY_SP_EL0) + [MSR_SP_EL0_X1]
            + load(2, EL0_CODE) + [MSR_ELR_EL1_X2] + [movz(4, spsr), MSR_SPSR_EL1_X4]
            + load(3, VBAR) + [MSR_VBAR_EL1_X3, ISB, ERET])
    h = Harness(code)
    h.write(EL0_CODE, lower)
    return h


# Both vectors an exception from SP_EL0 lands in: x12 = SP, x13 = SP_EL0; the first
# time (x15 = 0) return to the interrupted code, the second time report by HVC.
HANDLER = [mov_from_sp(12), MRS_X13_SP_EL0, 0xB5000000 | 3 << 5 | 15, movz(15, 1), ERET, hvc(1)]


@pytest.mark.parametrize("mode,spsr,vector", [("EL0t", 0x0, 0x400), ("EL1t", 0x3C4, 0x000)], ids=["EL0t", "EL1t"])
@pytest.mark.parametrize("kind,insn,step", [("SVC", SVC0, True), ("UNDEF", UDF, False)], ids=["SVC", "UNDEF"])
def test_exception_from_sp_el0_runs_on_sp_el1(mode, spsr, vector, kind, insn, step):
    # The lower code moves its SP, takes the exception, reads its SP back, takes it again.
    handler = HANDLER if step else (
        [mov_from_sp(12), MRS_X13_SP_EL0, 0xB5000000 | 6 << 5 | 15, movz(15, 1)]
        + [0xD5384034, 0x91001294, 0xD5184034, ERET, hvc(1)])  # ELR += 4 over the UDF
    h = boot(spsr, load(11, USER_SP) + [mov_sp_from(11), insn, mov_from_sp(14), insn])
    h.write(VBAR + vector, handler)
    ex = h.next_exit()
    assert ex.ec == 0x16, f"{mode} {kind}: expected the handler's HVC (EC 0x16), got {ex}"
    got = {"SP in handler": h.ctx.x(12), "SP_EL0 in handler": h.ctx.x(13), "SP after ERET": h.ctx.x(14)}
    want = {"SP in handler": KERNEL_SP, "SP_EL0 in handler": USER_SP, "SP after ERET": USER_SP}
    assert got == want, f"{mode} {kind}: expected {[hex(v) for v in want.values()]}, " \
                        f"got {[hex(v) for v in got.values()]}"
