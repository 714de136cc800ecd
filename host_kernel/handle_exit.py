"""Exit dispatch keyed by ESR_EL2.EC (KVM handle_exit.c).  Every class without
a handler falls back to one function that logs and injects UNDEF."""
from __future__ import annotations

from engine.ledger import HIGHVISOR
from el2 import syndrome as syn
from el2.lowvisor import ARM_EXCEPTION_IRQ, ARM_EXCEPTION_TRAP, EXIT_INSN_LIMIT, Exit
from host_kernel import debug, inject, psci, sys_regs, vm_switch
from host_kernel.mmu import EXIT_TO_USER, RESUME, handle_guest_abort, inject_fault


def handle_hvc(vcpu, ex: Exit) -> int:
    ctx, led = vcpu.ctx, vcpu.ledger
    fid = ctx.x(0) & 0xFFFFFFFF
    if led.segments is not None:
        led.tag(f"hvc:{fid:#x}")
    led.charge_named(HIGHVISOR, lambda: f"kvm_hvc_call_handler: SMCCC function {fid:#010x}", "hvc_handler")
    if fid == vm_switch.VM_SWITCH_CALL:
        if vm_switch.handle(vcpu):
            vcpu.kvm_run.exit_reason = "BLOCKED"
            return EXIT_TO_USER
        return RESUME
    res = psci.call(vcpu, fid)
    if res is None:
        if vcpu.trace.on("psci"):
            vcpu.trace.log("psci", f"{vcpu.tag}: unknown SMCCC function {fid:#x}: NOT_SUPPORTED")
        res = psci.NOT_SUPPORTED
    if res is psci.POWER_OFF:
        vcpu.kvm_run.exit_reason = "POWER_OFF"
        return EXIT_TO_USER
    if isinstance(res, psci.SystemEvent):
        if vcpu.trace.on("psci"):
            vcpu.trace.log("psci", f"{vcpu.tag}: system event {res.type}")
        vcpu.kvm_run.system_event(res.type)
        return EXIT_TO_USER
    ctx.set_x(0, res & 0xFFFF_FFFF_FFFF_FFFF)
    return RESUME


def handle_smc(vcpu, ex: Exit) -> int:
    """SMCCC over SMC is not offered (the DTB says hvc): UNDEF, as KVM does."""
    vcpu.guest_error(f"SMC #{ex.esr & 0xFFFF:#x} at {ex.elr:#x}: UNDEF injected")
    return inject_fault(vcpu, inject.inject_undef)


def handle_sys64(vcpu, ex: Exit) -> int:
    p = syn.SysRegAccess.decode(ex.esr)
    desc = sys_regs.find(p)
    if desc is None:
        vcpu.unimplemented(f"unhandled {'MRS' if p.is_read else 'MSR'} S{p.op0}_{p.op1}_C{p.crn}_C{p.crm}_{p.op2} "
                         f"at {ex.elr:#x}: UNDEF injected")
        return inject_fault(vcpu, inject.inject_undef)
    if vcpu.ledger.segments is not None:
        vcpu.ledger.tag(f"sys:{desc.reg}")
    vcpu.ledger.charge_named(HIGHVISOR, lambda: f"emulate {desc.reg}", "sysreg_emulate")
    try:
        value = desc.access(vcpu, p, desc)
    except sys_regs.UndefinedAccess:
        vcpu.guest_error(f"{'MRS' if p.is_read else 'MSR'} {desc.reg} at {ex.elr:#x} is UNDEFINED: UNDEF injected")
        return inject_fault(vcpu, inject.inject_undef)
    if p.is_read:
        vcpu.ctx.set_x(p.rt, value or 0)
    vcpu.skip_instruction(lambda: f"{'MRS' if p.is_read else 'MSR'} {desc.reg} (emulated)")
    return RESUME


def handle_wfx(vcpu, ex: Exit) -> int:
    vcpu.skip_instruction("WFI (trapped)")
    return vcpu.block_in_wfi()


def handle_unknown_ec(vcpu, ex: Exit) -> int:
    vcpu.unimplemented(f"unknown exception class {ex.ec:#x} (ESR_EL2 {ex.esr:#x}) at {ex.elr:#x}: UNDEF injected")
    return inject_fault(vcpu, inject.inject_undef)


ARM_EXIT_HANDLERS = {
    syn.EC_WFX: handle_wfx,
    syn.EC_HVC64: handle_hvc,
    syn.EC_SMC64: handle_smc,
    syn.EC_SYS64: handle_sys64,
    syn.EC_IABT_LOW: handle_guest_abort,
    syn.EC_DABT_LOW: handle_guest_abort,
}


def exit_name(ex: Exit) -> str:
    if ex.code == ARM_EXCEPTION_TRAP:
        return syn.EC_NAMES.get(ex.ec, f"EC_{ex.ec:#x}")
    return "IRQ" if ex.code == 0 else "LIMIT"


def handle_exit(vcpu, ex: Exit, name: str | None = None) -> int:
    """> 0: resume the guest; 0: return to user space (KVM's convention)."""
    name = name or exit_name(ex)
    debug.check_guest_debug(vcpu)
    if ex.code == EXIT_INSN_LIMIT:
        vcpu.kvm_run.insn_limit()
        return EXIT_TO_USER
    if vcpu.ledger.segments is not None:
        vcpu.ledger.tag(name)
    if ex.code == ARM_EXCEPTION_IRQ:      # already handled by the host's IRQ path
        vcpu.ledger.charge_named(HIGHVISOR, "handle_exit: ARM_EXCEPTION_IRQ, resume", "handle_exit")
        return RESUME
    vcpu.ledger.charge_named(HIGHVISOR, lambda: f"handle_exit: dispatch EC {ex.ec:#x} ({name})",
                             "handle_exit")
    return ARM_EXIT_HANDLERS.get(ex.ec, handle_unknown_ec)(vcpu, ex)
