"""Injecting exceptions into a vCPU that is not running (KVM inject_fault.c):
the highvisor edits the saved context as the hardware would on exception
entry to EL1 (ARM ARM D1.10)."""
from __future__ import annotations

from engine import aarch64
from el2 import syndrome as syn
from el2.context import VcpuContext


def _enter_el1(ctx: VcpuContext, esr: int, far: int | None) -> None:
    pstate, pc = ctx.pstate, ctx.pc
    ctx.gp.set("ELR_EL1", pc)
    ctx.gp.set("SPSR_EL1", pstate)
    ctx.el1.set("ESR_EL1", esr)
    if far is not None:
        ctx.el1.set("FAR_EL1", far)
    ctx.pc = ctx.el1.get("VBAR_EL1") + aarch64.vector_offset_el1(pstate)
    ctx.pstate = aarch64.el1_entry_pstate(pstate)


def _same_el(ctx: VcpuContext) -> bool:
    return aarch64.current_el(ctx.pstate) == 1


def inject_undef(ctx: VcpuContext) -> None:
    """An UNDEFINED exception at the trapped instruction (ELR = its address)."""
    _enter_el1(ctx, syn.syn_uncategorized(), None)


def inject_dabt(ctx: VcpuContext, addr: int, is_write: bool = False) -> None:
    """A synchronous external abort on a data access (DFSC 0x10)."""
    _enter_el1(ctx, syn.syn_data_abort_no_iss(_same_el(ctx), ea=False, s1ptw=False, wnr=is_write,
                                              dfsc=syn.FSC_SEA), addr)


def inject_pabt(ctx: VcpuContext, addr: int) -> None:
    """A synchronous external abort on an instruction fetch (IFSC 0x10)."""
    _enter_el1(ctx, syn.syn_insn_abort(_same_el(ctx), ea=False, s1ptw=False, ifsc=syn.FSC_SEA), addr)
