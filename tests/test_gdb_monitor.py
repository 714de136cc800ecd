"""`monitor` commands (qRcmd): the lowvisor's view of a vCPU after a real run."""
from types import SimpleNamespace

import pytest

from armvirt import paths, profile
from armvirt.console import Console
from armvirt.gdbstub import monitor
from armvirt.gdbstub.threads import Threads
from armvirt.machine import Machine, MachineConfig
from engine import layout
from gic.lr import LR_STATE_PENDING, ListReg
from gic.v3_hyp import IchLr


@pytest.fixture(scope="module", params=[2, 3], ids=["gicv2", "gicv3"])
def ran(request):
    m = Machine(MachineConfig(kernel=paths.image_path("gdb-demo.elf"), smp=2, gic_version=request.param),
                profile.load("xgene"), console=Console(echo=False))
    res = m.run()
    assert res.status == 0, res.console.lines
    srv = SimpleNamespace(threads=Threads([m.vm]), g_vcpu=m.vm.vcpus[0],
                          user_device=lambda vm, ipa: m.user_bus.find(ipa))
    return m, srv


def test_help_lists_every_command(ran):
    _, srv = ran
    text = monitor.run("help", srv)
    for name in monitor.COMMANDS:
        assert f"monitor {name}" in text, f"expected 'monitor {name}' in the help, observed:\n{text}"
    assert monitor.run("", srv) == text, "an empty monitor line should print the help"


def test_el2_registers(ran):
    m, srv = ran
    text = monitor.run("el2", srv)
    lines = {ln.split()[0]: ln for ln in text.splitlines() if ln.split()}
    hcr = int(lines["HCR_EL2"].split()[1], 16)
    want = m.vm.vcpus[0].ctx.trap.hcr
    assert hcr == want, f"HCR_EL2: expected {want:#x}, observed {hcr:#x}"
    for bit in ("VM", "IMO", "TWI", "TSC", "RW"):
        assert f" {bit} " in lines["HCR_EL2"] + " ", f"expected {bit} decoded in {lines['HCR_EL2']!r}"
    assert f"VMID {m.vm.vmid}" in lines["VTTBR_EL2"], f"observed {lines['VTTBR_EL2']!r}"
    ex = m.vm.vcpus[0].last_exit
    assert int(lines["ESR_EL2"].split()[1], 16) == ex.esr and "HVC64" in lines["ESR_EL2"], \
        f"the last exit is PSCI SYSTEM_OFF (HVC64, ESR {ex.esr:#x}); observed {lines['ESR_EL2']!r}"
    assert ("ICH_HCR_EL2" if m.vm.gic_version == 3 else "GICH_HCR") in text, text


def test_vgic_list_registers_decoded(ran):
    m, srv = ran
    vcpu = m.vm.vcpus[0]
    saved = list(vcpu.ctx.vgic.lr)
    if m.vm.gic_version == 3:
        vcpu.ctx.vgic.lr[0] = IchLr(27, LR_STATE_PENDING, 0xA0, group1=True, hw=True, pintid=27).encode()
        want = "vINTID 27 pending priority 0xa0 group 1 HW pINTID 27"
    else:
        vcpu.ctx.vgic.lr[0] = ListReg(27, LR_STATE_PENDING, 0xA0, hw=True, pintid=27).encode()
        want = "vINTID 27 pending priority 0xa0 group 0 HW pINTID 27"
    try:
        text = monitor.run("vgic", srv)
    finally:
        vcpu.ctx.vgic.lr[:] = saved
    lr0 = next(ln for ln in text.splitlines() if "LR0" in ln)
    assert want in lr0, f"expected {want!r}, observed {lr0!r}"
    assert "saved copy" in text, f"a vCPU out of the engine shows its saved state: {text}"


def test_last_exit(ran):
    _, srv = ran
    text = monitor.run("exit", srv)
    assert "last exit: HVC64 (trap)" in text and "exits: " in text, f"observed:\n{text}"
    assert "DABT_LOW" in text, f"the first touches of RAM are stage-2 faults (DABT_LOW): {text}"


@pytest.mark.parametrize("ipa,needle", [
    (layout.RAM_BASE + 0x80000, "level 2 block (2 MiB) descriptor"),   # the image: mapped (THP), RWX normal
    (layout.RAM_BASE + (128 << 20) - 0x2000, "the fault maps it"),    # RAM never touched
    (layout.UART_BASE, "MMIO: pl011 at offset 0x0"),
    (layout.GIC_DIST_BASE + 4, "MMIO: vgic-dist at offset 0x4"),
    (1 << 40, "outside the IPA space"),
    (0x0, "MMIO with no device"),
])
def test_stage2(ran, ipa, needle):
    _, srv = ran
    text = monitor.run(f"stage2 {ipa:#x}", srv)
    assert needle in text, f"stage2 {ipa:#x}: expected {needle!r}, observed:\n{text}"


def test_stage2_mapped_page_matches_the_tables(ran):
    m, srv = ran
    ipa = layout.RAM_BASE + 0x80000
    w = m.vm.stage2.walk(ipa)
    text = monitor.run(f"stage2 {ipa}", srv)
    assert f"PA {w.pa:#x}" in text and "RWX normal" in text, f"expected PA {w.pa:#x} RWX, observed:\n{text}"


def test_vcpus_and_errors(ran):
    m, srv = ran
    text = monitor.run("vcpus", srv)
    assert text.count("vcpu") == 2 and "pCPU 0:" in text and "modeled cycles" in text, text
    cyc = f"{m.host.pcpus[0].cycles:,}"
    assert cyc in text, f"expected pCPU 0's cycles {cyc} in:\n{text}"
    assert "unknown command 'frob'" in monitor.run("frob", srv)
    assert "usage: monitor stage2 IPA" in monitor.run("stage2", srv)
    assert "not an address" in monitor.run("stage2 zz", srv)
