"""GDB `monitor` commands (qRcmd): the lowvisor's view of the current vCPU (GDB's
selected thread): its EL2 registers, its vGIC list registers, its last exit, and
the stage-2 translation of an IPA.  Each command returns the text GDB prints."""
from __future__ import annotations

import shlex

from el2 import hcr as H
from el2 import syndrome as syn
from el2.lowvisor import ARM_EXCEPTION_IRQ, ARM_EXCEPTION_TRAP
from el2.stage2 import PAGE_SIZE, S2_XN, S2AP_R, S2AP_W
from engine import aarch64
from engine import sysreg as S
from host_kernel.handle_exit import exit_name

# HCR_EL2 bit names, from el2/hcr.py's constants (one bit each)
HCR_BITS = sorted((v.bit_length() - 1, k[4:]) for k, v in vars(H).items()
                  if k.startswith("HCR_") and not k.endswith("_FLAGS") and isinstance(v, int)
                  and v and not v & (v - 1))


class MonitorError(Exception):
    pass


def _where(srv, vcpu) -> str:
    t = srv.threads
    place = (f"loaded on pCPU {vcpu.cpu.index}" if t.resident(vcpu)
             else f"saved in its context (pCPU {vcpu.cpu.index})")
    return f"{vcpu.tag} of {vcpu.vm.name} (thread {t.ident(vcpu)}), {place}"


def _row(name: str, value: int, note: str = "") -> str:
    return f"{name:<12} {value:#018x}" + (f"  {note}" if note else "")


def _hcr_bits(v: int) -> str:
    return " ".join(n for b, n in HCR_BITS if v >> b & 1)


def _hcr(srv, vcpu) -> int:
    """What the core holds for this vCPU: the engine's register while it is loaded,
    else what the lowvisor loads at entry (the vGIC's virtual IRQ line is ORed in then)."""
    if srv.threads.resident(vcpu):
        return vcpu.cpu.read_sysreg(S.HCR_EL2)
    return vcpu.ctx.trap.hcr


def cmd_el2(srv, vcpu, args) -> str:
    """the EL2 registers of the current vCPU"""
    ctx, low = vcpu.ctx, vcpu.lowvisor
    h = _hcr(srv, vcpu)
    vttbr = ctx.vttbr
    lines = [_where(srv, vcpu),
             _row("HCR_EL2", h, _hcr_bits(h)),
             _row("VTTBR_EL2", vttbr, f"VMID {vttbr >> 48 & 0xFF}, BADDR {vttbr & (1 << 48) - 2:#x}"),
             _row("VTCR_EL2", low.el2.vtcr),
             _row("CPTR_EL2", ctx.trap.cptr), _row("HSTR_EL2", ctx.trap.hstr),
             _row("MDCR_EL2", ctx.trap.mdcr),
             _row("CNTHCTL_EL2", ctx.timer.cnthctl), _row("CNTVOFF_EL2", ctx.timer.cntvoff),
             _row("VMPIDR_EL2", ctx.el1.get("VMPIDR_EL2"))]
    ex = vcpu.last_exit
    if ex is None:
        lines.append("ESR_EL2, FAR_EL2, HPFAR_EL2, ELR_EL2: no exit yet")
    else:
        abort = ex.ec in (syn.EC_DABT_LOW, syn.EC_IABT_LOW)
        lines += [_row("ESR_EL2", ex.esr, _ec_text(ex)),
                  _row("FAR_EL2", ex.far, "" if abort else "(UNKNOWN for this exception class)"),
                  _row("HPFAR_EL2", ex.hpfar, f"IPA {syn.hpfar_to_ipa(ex.hpfar, ex.far):#x}" if abort else ""),
                  _row("ELR_EL2", ex.elr)]
    return "\n".join(lines) + "\n" + cmd_vgic(srv, vcpu, args)


def _ec_text(ex) -> str:
    if ex.code != ARM_EXCEPTION_TRAP:
        return "(not a trap)"
    return f"EC {ex.ec:#04x} {syn.EC_NAMES.get(ex.ec, 'unknown')}, ISS {ex.esr & 0x1FFFFFF:#x}"


def _lr_v2(v: int) -> str:
    from gic.lr import ListReg
    lr = ListReg.decode(v)
    return _lr_text(lr.state, lr.vintid, lr.priority, lr.group1, lr.hw, lr.pintid, lr.eoi)


def _lr_v3(v: int) -> str:
    from gic.v3_hyp import IchLr
    lr = IchLr.decode(v)
    return _lr_text(lr.state, lr.vintid, lr.priority, lr.group1, lr.hw, lr.pintid, lr.eoi)


def _lr_text(state, vintid, prio, group1, hw, pintid, eoi) -> str:
    if state == 0 and not (eoi and not hw):
        return "invalid"
    st = ("invalid", "pending", "active", "pending+active")[state]
    extra = f" HW pINTID {pintid}" if hw else (" EOI-maintenance" if eoi else "")
    return f"vINTID {vintid} {st} priority {prio:#x} group {int(group1)}{extra}"


def cmd_vgic(srv, vcpu, args) -> str:
    """the vGIC hypervisor interface of the current vCPU (GICH_* or ICH_*_EL2, list registers)"""
    v3 = vcpu.vm.gic_version == 3
    live = srv.threads.resident(vcpu)
    src = vcpu.lowvisor.ws.gich if live else vcpu.ctx.vgic
    where = "the pCPU's interface (loaded)" if live else "the vCPU's saved copy"
    if v3:
        names = ["HCR", "VMCR", "MISR", "EISR", "ELRSR"] + [f"AP{g}R0" for g in (0, 1)]
        get = src.read if live else (lambda n: src.ap0r[0] if n == "AP0R0" else src.ap1r[0] if n == "AP1R0"
                                     else getattr(src, n.lower()))
        fmt, decode = "ICH_{}_EL2", _lr_v3
    else:
        names = ["HCR", "VMCR", "MISR", "EISR", "ELRSR", "APR"]
        get = (lambda n: getattr(src, n.lower()))
        fmt, decode = "GICH_{}", _lr_v2
    lines = [f"vGIC (GICv{3 if v3 else 2}), {where}:"]
    lines += [_row(fmt.format(n), get(n)) for n in names]
    for i, lr in enumerate(src.lr):
        lines.append(_row(fmt.format(f"LR{i}"), lr, decode(lr)))
    return "\n".join(lines) + "\n"


def cmd_exit(srv, vcpu, args) -> str:
    """the last exit of the current vCPU, and its exits so far"""
    ex = vcpu.last_exit
    lines = [_where(srv, vcpu)]
    if ex is None:
        lines.append("no exit yet")
    else:
        kind = {ARM_EXCEPTION_TRAP: "trap", ARM_EXCEPTION_IRQ: "IRQ"}.get(ex.code, "stop")
        lines.append(f"last exit: {exit_name(ex)} ({kind}) at cycle {ex.t_trap:,}, guest PC {ex.elr:#x}")
        if ex.code == ARM_EXCEPTION_TRAP:
            lines.append(f"  ESR_EL2 {ex.esr:#010x} ({_ec_text(ex)})  FAR_EL2 {ex.far:#x}  HPFAR_EL2 {ex.hpfar:#x}")
    rows = vcpu.stats.rows()
    if rows:
        lines.append("exits: " + ", ".join(f"{r['VM-EXIT']} {r['Samples']}" for r in rows))
    return "\n".join(lines) + "\n"


def cmd_stage2(srv, vcpu, args) -> str:
    """stage2 IPA: the stage-2 translation of an IPA in the current vCPU's VM"""
    if len(args) != 1:
        raise MonitorError("usage: monitor stage2 IPA")
    try:
        ipa = int(args[0], 0)
    except ValueError:
        raise MonitorError(f"stage2: {args[0]!r} is not an address") from None
    vm = vcpu.vm
    w = vm.stage2.walk(ipa)
    head = f"IPA {ipa:#x} in {vm.name} (VMID {vm.vmid}, VTTBR_EL2 {vm.stage2.vttbr:#x}):"
    if w.pa is not None:
        d = w.desc
        perms = ("R" if d & S2AP_R else "-") + ("W" if d & S2AP_W else "-") + ("-" if d & S2_XN else "X")
        attr = "normal" if (d >> 2) & 0xF == 0xF else "device"
        slot = vm.memslots.find(ipa)
        backing = (f", memory slot {slot.ipa:#x}+{slot.size:#x}" if slot else
                   ", a device page (no memory slot)")
        kind = "page" if w.level == 3 else "block (2 MiB)"     # ARM ARM D8.3.1
        return (f"{head}\n  level {w.level} {kind} descriptor {d:#018x}: PA {w.pa:#x}, {perms} {attr}{backing}\n")
    lines = [f"{head}\n  not mapped at stage 2 (the walk stops at level {w.level}): an access traps to EL2"]
    slot = vm.memslots.find(ipa)
    if slot is not None:
        page = ipa & ~(PAGE_SIZE - 1)
        lines.append(f"  memory slot {slot.ipa:#x}+{slot.size:#x}: the fault maps it to PA {slot.to_host_pa(page):#x}"
                     f" (user_mem_abort)")
    elif not vm.stage2.in_range(ipa):
        lines.append("  outside the IPA space: the guest gets an external abort")
    else:
        dev = vm.kernel_bus.find(ipa) or srv.user_device(vm, ipa)
        lines.append(f"  MMIO: {dev[0].name} at offset {dev[1]:#x}" if dev else
                     "  MMIO with no device: the guest gets an external abort")
    return "\n".join(lines) + "\n"


def cmd_vcpus(srv, vcpu, args) -> str:
    """every vCPU: state, pCPU, PC, and each pCPU's instructions and modeled cycles"""
    t = srv.threads
    lines = []
    for p in t.processes:
        for v in p.vm.vcpus:
            state = ("off" if not v.powered_on else "blocked in WFI" if v.blocked_until is not None
                     else "running" if p.vm.running is v else "runnable")
            st = t.state(v)
            el = aarch64.current_el(st.get("cpsr"))
            mark = "*" if v is vcpu else " "
            lines.append(f"{mark} {t.ident(v):>8} {v.tag:<12} {state:<15} pCPU {v.cpu.index}  "
                         f"PC {st.get('pc'):#x} EL{el}{'' if p.attached else '  (process not attached)'}")
    for cpu in t.host.pcpus:
        lines.append(f"  pCPU {cpu.index}: {cpu.insns:,} guest instructions, {cpu.cycles:,} modeled cycles")
        if cpu.debug is not None and cpu.debug.moved_blocks:
            lines.append(f"    {cpu.debug.moved_blocks} blocks took another shape under the debugger's hooks")
    return "\n".join(lines) + "\n"


def cmd_help(srv, vcpu, args) -> str:
    """this list"""
    return "".join(f"monitor {name + (' IPA' if name == 'stage2' else ''):<16} "
                   f"{fn.__doc__.split(':', 1)[-1].strip() if name == 'stage2' else fn.__doc__}\n"
                   for name, fn in COMMANDS.items())


COMMANDS = {"help": cmd_help, "el2": cmd_el2, "vgic": cmd_vgic, "exit": cmd_exit,
            "stage2": cmd_stage2, "vcpus": cmd_vcpus}


def run(line: str, srv) -> str:
    try:
        words = shlex.split(line)
    except ValueError as e:
        return f"monitor: {e}\n"
    if not words:
        return cmd_help(srv, srv.g_vcpu, [])
    fn = COMMANDS.get(words[0])
    if fn is None:
        return f"monitor: unknown command {words[0]!r} (monitor help lists them)\n"
    try:
        return fn(srv, srv.g_vcpu, words[1:])
    except MonitorError as e:
        return f"{e}\n"
