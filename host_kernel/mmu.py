"""Stage-2 fault handling (KVM mmu.c kvm_handle_guest_abort / user_mem_abort /
io_mem_abort): map RAM on first touch, turn device accesses into MMIO."""
from __future__ import annotations

from engine.ledger import HIGHVISOR
from el2 import syndrome as syn
from el2.lowvisor import Exit
from el2.stage2 import BLOCK_SIZE, PAGE_SIZE
from host_kernel import inject
from host_kernel.mmio import MmioAccess

RESUME, EXIT_TO_USER = 1, 0
_MAPPABLE = {syn.FSC_TRANSLATION + lvl for lvl in range(4)} | {syn.FSC_ACCESS + lvl for lvl in range(4)}


def handle_guest_abort(vcpu, ex: Exit) -> int:
    vm = vcpu.vm
    ipa = syn.hpfar_to_ipa(ex.hpfar, ex.far)
    fsc = ex.esr & 0x3F
    is_iabt = ex.ec == syn.EC_IABT_LOW
    da = None if is_iabt else syn.DataAbort.decode(ex.esr)
    slot = vm.memslots.find(ipa)
    write_fault = da is not None and (da.wnr or da.s1ptw)      # kvm_is_write_fault
    if write_fault and slot is not None and slot.readonly:
        slot = None                       # a write to a read-only slot (a ROM device): MMIO
    if slot is not None and fsc in _MAPPABLE:
        map_fault(vcpu, slot, ipa)
        return RESUME
    if is_iabt:
        vcpu.guest_error(f"instruction fetch from IPA {ipa:#x} (no RAM): prefetch abort injected")
        return inject_fault(vcpu, lambda ctx: inject.inject_pabt(ctx, ex.far))
    if slot is not None or not vm.stage2.in_range(ipa):
        why = "permission" if slot is not None else "outside the IPA space"
        vcpu.guest_error(f"data abort at IPA {ipa:#x} ({why}, FSC {fsc:#x}): external abort injected")
        return inject_fault(vcpu, lambda ctx: inject.inject_dabt(ctx, ex.far, da.wnr))
    if da.cm and not da.s1ptw:
        # DC/IC by VA on an address that is no writable memory: KVM skips the instruction
        # (kvm_handle_guest_abort: "cache maintenance ... there is no cache to maintain")
        vcpu.skip_instruction("cache maintenance by VA outside writable memory")
        return RESUME
    return io_mem_abort(vcpu, ex, ipa)


def map_fault(vcpu, slot, ipa: int) -> None:
    """user_mem_abort: map the page (or THP block) of `slot` holding `ipa`, read-only
    for a read-only slot."""
    vm, led = vcpu.vm, vcpu.ledger
    writable = not slot.readonly
    block = huge_block(slot, ipa)
    if block is not None and not vm.stage2.block_free(block):
        block = None                  # pages of it are mapped already (the host mapped them)
    if block is not None:
        vm.stage2.map_block(block, slot.to_host_pa(block), writable=writable)
        led.charge_named(HIGHVISOR, "user_mem_abort: map a 2 MiB THP block at stage 2", "stage2_map_block")
        base, size = block, BLOCK_SIZE
    else:
        base, size = ipa & ~(PAGE_SIZE - 1), PAGE_SIZE
        vm.stage2.map_page(base, slot.to_host_pa(base), writable=writable)
        led.charge_named(HIGHVISOR, "user_mem_abort: map a RAM page at stage 2", "stage2_map_page")
    vm.counters["stage2_faults"] += 1
    if vcpu.trace.on("stage2"):
        vcpu.trace.log("stage2", f"{vcpu.tag}: map IPA {base:#x} -> PA {slot.to_host_pa(base):#x} "
                                 f"({size >> 10} KiB{'' if writable else ', read-only'})")


def huge_block(slot, ipa: int) -> int | None:
    """The 2 MiB block to map for a fault at `ipa` when the slot's host memory is backed
    by transparent huge pages (slot.thp), or None for a 4 KB page: as KVM's user_mem_abort with
    fault_supports_stage2_huge_mapping(), the whole block must lie inside the memory
    slot (a block never covers an IPA that is not this RAM) and the IPA and the
    host address must have the same offset in a block."""
    block = ipa & ~(BLOCK_SIZE - 1)
    if not slot.thp or (slot.host_pa - slot.ipa) & (BLOCK_SIZE - 1):
        return None
    if block < slot.ipa or block + BLOCK_SIZE > slot.ipa + slot.size:
        return None
    return block


def inject_fault(vcpu, how) -> int:
    how(vcpu.ctx)
    vcpu.ledger.charge_named(HIGHVISOR, "inject a synchronous exception into the guest", "inject_fault")
    if vcpu.cpu.exception_stalled():
        # No instruction retired since the last exception (a guest faulting in its own
        # vector, e.g. VBAR_EL1 outside RAM): the loop runs through the host, so the
        # host bounds it - the stall counts to --max-insns, and the turn ends.
        return vcpu.stalled_exit()
    return RESUME


def io_mem_abort(vcpu, ex: Exit, ipa: int) -> int:
    da = syn.DataAbort.decode(ex.esr)
    if not da.isv or da.s1ptw:
        # KVM gives up (-ENOSYS) on an MMIO access it cannot decode; the guest gets an abort here.
        vcpu.guest_error(f"MMIO access at IPA {ipa:#x} without a valid syndrome (ISV=0, e.g. LDP or "
                         f"writeback): external abort injected")
        return inject_fault(vcpu, lambda ctx: inject.inject_dabt(ctx, ex.far, da.wnr))
    led = vcpu.ledger
    led.charge_named(HIGHVISOR, "io_mem_abort: decode ISV/SAS/SRT/WnR", "mmio_decode")
    led.tag(f"mmio:{ipa:#x}")
    acc = MmioAccess(ipa, da.size, da.wnr, rt=da.srt, sign_extend=da.sse, sixty_four=da.sf)
    if da.wnr:
        acc.data = vcpu.ctx.x(da.srt) & ((1 << (8 * da.size)) - 1)
    if vcpu.trace.on("mmio"):
        vcpu.trace.log("mmio", f"{vcpu.tag}: {'write' if da.wnr else 'read'} {da.size}B IPA {ipa:#x}"
                           + (f" = {acc.data:#x}" if da.wnr else ""))
    hit = vcpu.vm.kernel_bus.find(ipa)
    if hit is not None:
        dev, off = hit
        key, what = dev.emulation(off, da.wnr)
        led.charge_named(HIGHVISOR, what, key)
        if da.wnr:
            dev.write(vcpu.index, off, da.size, acc.data)
        else:
            acc.data = dev.read(vcpu.index, off, da.size)
        for off_, is_write in dev.take_unhandled():
            vcpu.guest_error(f"{dev.name}: {'write to' if is_write else 'read of'} offset {off_:#x}, "
                             f"which is no register (RAZ/WI)")
        if vcpu.emul_cpuif is not None:
            vcpu.set_soft_virq()
        vcpu.complete_mmio(acc)
        return RESUME
    vcpu.start_user_mmio(acc)
    return EXIT_TO_USER
