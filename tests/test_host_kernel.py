"""Highvisor pieces: PSCI/SMCCC, the MMIO bus, exit dispatch, fault injection."""
import pytest

from el2 import syndrome as syn
from el2.lowvisor import ARM_EXCEPTION_TRAP, Exit
from host_kernel import psci
from host_kernel.handle_exit import handle_exit
from host_kernel.mmio import MmioAccess, MmioBus, complete_read_value
from tests.harness import ENTRY, Harness, hvc


def call(h, fid, *args):
    h.ctx.set_x(0, fid)
    for i, a in enumerate(args, 1):
        h.ctx.set_x(i, a)
    return psci.call(h.vcpu, fid)


@pytest.mark.parametrize("fid,args,want", [
    (psci.PSCI_VERSION, (), psci.PSCI_VERSION_1_0),
    (psci.PSCI_MIGRATE_INFO_TYPE, (), psci.MIGRATE_INFO_TYPE_NO_TOS),
    (psci.PSCI_FEATURES, (psci.PSCI_SYSTEM_OFF,), psci.SUCCESS),
    (psci.PSCI_FEATURES, (0x12345678,), psci.NOT_SUPPORTED),
    (psci.PSCI_CPU_ON64, (0x5, ENTRY, 0), psci.INVALID_PARAMETERS),
    (psci.PSCI_CPU_ON64, (0x0, ENTRY, 0), psci.ALREADY_ON),
    (psci.PSCI_AFFINITY_INFO64, (0x0, 0), psci.AFF_ON),
    (psci.PSCI_AFFINITY_INFO64, (0x9, 0), psci.INVALID_PARAMETERS),
    (psci.SMCCC_VERSION, (), psci.SMCCC_VERSION_1_1),
])
def test_psci_return_codes(fid, args, want):
    h = Harness([hvc(0)])
    got = call(h, fid, *args)
    assert got == want, f"fid {fid:#x}{args}: expected {want}, got {got}"


def test_system_off_is_a_system_event():
    h = Harness([hvc(0)])
    assert call(h, psci.PSCI_SYSTEM_OFF) == psci.SystemEvent(psci.SYSTEM_EVENT_SHUTDOWN)


def test_unknown_smccc_leaves_x1_to_x30():
    h = Harness([hvc(0)])
    for i in range(1, 31):
        h.ctx.set_x(i, 0xA000 + i)
    h.ctx.set_x(0, 0x4B000000)
    ex = h.next_exit()
    assert handle_exit(h.vcpu, ex) == 1
    assert h.ctx.x(0) == 2**64 - 1, f"x0 expected -1, got {h.ctx.x(0):#x}"
    assert [h.ctx.x(i) for i in range(1, 31)] == [0xA000 + i for i in range(1, 31)]


def test_unknown_ec_injects_undef():
    h = Harness([hvc(0)])
    h.next_exit()
    vbar = 0x4000_8000
    h.ctx.el1.set("VBAR_EL1", vbar)
    pc = h.ctx.pc
    ex = Exit(ARM_EXCEPTION_TRAP, esr=syn.esr(0x07, 0), elr=pc)   # FP access trap: no handler
    assert handle_exit(h.vcpu, ex) == 1
    assert h.ctx.pc == vbar + 0x200, f"expected the current-EL SPx sync vector, got {h.ctx.pc:#x}"
    assert h.ctx.el1.get("ESR_EL1") == syn.syn_uncategorized()
    assert h.ctx.gp.get("ELR_EL1") == pc
    assert h.vm.guest_errors, "the unknown class was logged"


class Dev:
    def __init__(self, name):
        self.name = name


def test_mmio_bus_offsets_and_overlaps():
    bus = MmioBus("t")
    a, b = Dev("a"), Dev("b")
    bus.register(0x1000, 0x100, a)
    bus.register(0x2000, 0x100, b)
    assert bus.find(0x2010) == (b, 0x10)
    assert bus.find(0x1100) is None
    with pytest.raises(ValueError):
        bus.register(0x10F0, 0x20, Dev("c"))


@pytest.mark.parametrize("data,size,sse,sf,want", [
    (0x80, 1, False, False, 0x80),
    (0x80, 1, True, False, 0xFFFFFF80),
    (0x8000, 2, True, True, 0xFFFF_FFFF_FFFF_8000),
    (0x1234, 2, True, True, 0x1234),
])
def test_mmio_read_extension(data, size, sse, sf, want):
    got = complete_read_value(MmioAccess(0, size, False, data=data, sign_extend=sse, sixty_four=sf))
    assert got == want, f"expected {want:#x}, got {got:#x}"


def test_fetch_from_nowhere_is_a_prefetch_abort():
    from tests.harness import movz
    # BR to IPA 0x0 (flash, not fitted): the highvisor injects an external abort on fetch.
    h = Harness([movz(1, 0), 0xD61F0020])            # BR X1
    h.ctx.el1.set("VBAR_EL1", 0x4000_8000)
    ex = h.next_exit()
    assert ex.ec == syn.EC_IABT_LOW, f"expected a stage-2 instruction abort, got EC {ex.ec:#x}"
    assert handle_exit(h.vcpu, ex) == 1
    esr = h.ctx.el1.get("ESR_EL1")
    assert (esr >> 26, esr & 0x3F) == (syn.EC_IABT_CUR, syn.FSC_SEA), f"ESR_EL1 {esr:#x}"
    assert h.ctx.el1.get("FAR_EL1") == 0 and h.ctx.pc == 0x4000_8200


def test_alignment_fault_is_taken_by_the_guest():
    from tests.harness import movz
    # An unaligned LDXR always faults (ARM ARM B2.5.2): the core takes it to EL1 (DFSC 0x21),
    # no EL2 exit.  (This engine build does not enforce SCTLR_EL1.A on ordinary loads.)
    code = [movz(2, 0x4000, 16), 0x91000442, 0xC85F7C41, hvc(0)]   # ADD X2, X2, #1; LDXR X1, [X2]
    h = Harness(code)
    vbar = 0x4000_8000
    h.ctx.el1.set("VBAR_EL1", vbar)
    h.write(vbar + 0x200, [hvc(0x21)])                             # the guest's handler reports back
    ex = h.next_exit()
    assert ex.esr == syn.syn_aa64_hvc(0x21), f"expected the handler's HVC, got ESR {ex.esr:#x}"
    esr = h.ctx.el1.get("ESR_EL1")
    assert (esr >> 26, esr & 0x3F) == (syn.EC_DABT_CUR, syn.FSC_ALIGNMENT), f"ESR_EL1 {esr:#x}"
    assert h.ctx.el1.get("FAR_EL1") == 0x4000_0001
    assert h.ctx.gp.get("ELR_EL1") == ENTRY + 8, "ELR_EL1 points at the faulting LDR"


def _read_sysreg(h, key, gic=None):
    from tests.harness import mrs
    op0, op1, crn, crm, op2 = key
    h.write(ENTRY, [mrs(0, op0, op1, crn, crm, op2), hvc(0)])
    ex = h.next_exit()
    assert ex.ec == syn.EC_SYS64, f"expected the ID register read to trap (EC 0x18, TID3), got {ex}"
    assert handle_exit(h.vcpu, ex) == 1
    return h.ctx.x(0), h.next_exit()


@pytest.mark.parametrize("gic", [2, 3])
def test_id_registers_are_the_vms(gic):
    """HCR_EL2.TID3: ID_AA64PFR0_EL1.GIC says whether the ICC_* interface is there (it
    is with GICv3), PMUVer says there is no PMU; the rest is the core's."""
    from engine.sysreg import SysReg
    from host_kernel.sys_regs import ID_AA64DFR0_EL1, ID_AA64PFR0_EL1
    h = Harness([hvc(0)])
    h.vm.gic_version = gic
    pfr0, after = _read_sysreg(h, ID_AA64PFR0_EL1)
    core = h.vcpu.cpu.read_sysreg(SysReg(*ID_AA64PFR0_EL1))
    want = (core & ~(0xF << 24)) | ((1 if gic == 3 else 0) << 24)
    assert pfr0 == want, f"GICv{gic}: ID_AA64PFR0_EL1 expected {want:#x}, got {pfr0:#x} (core {core:#x})"
    assert after.ec == syn.EC_HVC64 and h.ctx.pc == ENTRY + 8, f"the MRS completed: {after}"
    h = Harness([hvc(0)])
    dfr0, _ = _read_sysreg(h, ID_AA64DFR0_EL1)
    assert (dfr0 >> 8) & 0xF == 0, f"PMUVer expected 0 (no PMU), got ID_AA64DFR0_EL1 {dfr0:#x}"
    reserved, _ = _read_sysreg(Harness([hvc(0)]), (3, 0, 0, 7, 7))
    assert reserved == 0, f"an unallocated ID register reads as zero, got {reserved:#x}"


def test_pmu_registers_are_undefined():
    """No PMU on the board: MDCR_EL2.TPM traps PMCCNTR_EL0, which is UNDEFINED."""
    from tests.harness import mrs
    h = Harness([mrs(0, 3, 3, 9, 13, 0), hvc(0)])        # MRS x0, PMCCNTR_EL0
    ex = h.next_exit()
    assert ex.ec == syn.EC_SYS64, f"expected an EC 0x18 trap, got {ex}"
    vbar = 0x4000_8000
    h.ctx.el1.set("VBAR_EL1", vbar)
    assert handle_exit(h.vcpu, ex) == 1
    assert h.ctx.pc == vbar + 0x200 and h.ctx.el1.get("ESR_EL1") == syn.syn_uncategorized(), \
        f"expected UNDEF at the current-EL vector, got pc {h.ctx.pc:#x} ESR {h.ctx.el1.get('ESR_EL1'):#x}"
    assert h.vm.counters["unimp"] == 1, f"logged under unimp: {dict(h.vm.counters)}"
