"""Boot every guest image under the split-mode hypervisor and assert on what it printed."""
import pytest


def lines_with(res, prefix):
    return [l for l in res.console.lines if l.startswith(prefix)]


def assert_clean(res):
    assert (res.status, res.reason) == (0, "shutdown"), \
        f"expected status 0 after SYSTEM_OFF, got {res.status} ({res.reason}: {res.message}); console:\n{res.console.text}"


def test_hello(boot):
    res = boot("hello.elf")
    assert_clean(res)
    assert "Hello from armvirt guest at EL1" in res.console.lines, res.console.text
    assert "PSCI version 1.0" in res.console.lines, res.console.text


def test_hypercall_preserves_registers(boot):
    res = boot("hypercall.elf")
    assert_clean(res)
    assert "hypercall: ret=-1 regs preserved" in res.console.lines, res.console.text
    hvc = next(r for r in res.stats if r["VM-EXIT"] == "HVC64")
    assert hvc["Samples"] >= 1000, f"expected >= 1000 HVC64 exits, got {hvc['Samples']}"


def test_mmio_user_reads_the_virtio_mmio_device_id(boot):
    """Transport 0 answers as QEMU's with no backend: Version 2, DeviceID 0 (no device)."""
    res = boot("mmio-user.elf")
    assert_clean(res)
    assert lines_with(res, "mmio_user: virtio-mmio@0xa000000 version=2 DeviceID=0 "), res.console.text
    dabt = next(r for r in res.stats if r["VM-EXIT"] == "DABT_LOW")
    assert dabt["Samples"] >= 1016, f"expected >= 1016 DeviceID reads (16 warm-up) to exit, got {dabt['Samples']}"


@pytest.mark.parametrize("thp", [True, False])
def test_memtouch_faults_in_every_page(boot, thp):
    """RAM maps on first touch: by 2 MiB block with THP (one fault per block), by 4 KB
    page without; the 2 GICV pages are mapped up front."""
    res = boot("memtouch.elf", thp=thp)
    assert_clean(res)
    assert "memtouch: touched_pages=4096 bytes=16777216 verify=ok" in res.console.lines, res.console.text
    pages, blocks, faults = res.extra["stage2_pages"], res.extra["stage2_blocks"], res.counters["stage2_faults"]
    assert pages >= 4096, f"expected >= 4096 stage-2 pages, got {pages}"
    if thp:
        assert faults == blocks >= 8 and pages == 512 * blocks + 2, \
            f"expected one fault per 2 MiB block: {faults} faults, {blocks} blocks, {pages} pages"
    else:
        assert blocks == 0 and faults >= 4096 and pages == faults + 2, \
            f"expected one fault per page: {faults} faults, {blocks} blocks, {pages} pages"


def test_el0_svc_and_page_fault(boot):
    res = boot("el0.elf")
    assert_clean(res)
    assert "el0: svc_calls=4 page_faults=1 undefs=1 el0_value_ok=1 OK" in res.console.lines, res.console.text
    want = "el0: kernel stack and SP_EL0 right on 6 of 6 exceptions from EL0"
    assert want in res.console.lines, f"expected {want!r} (SVC, abort, UNDEF on SP_EL1): {res.console.text}"
    fault = lines_with(res, "el0: data abort from EL0 ESR=0x92000047")
    assert fault, f"expected ESR_EL1 0x92000047 (EC 0x24 from EL0, WnR, L3 translation): {res.console.text}"


def test_hostile_guest_is_contained(boot):
    res = boot("hostile.elf")
    assert_clean(res)
    assert "hostile: attempts=16 blocked=16" in res.console.lines, res.console.text
    assert not [l for l in res.console.lines if "NOT BLOCKED" in l], res.console.text
    assert len(res.guest_errors) >= 7, f"every attempt is logged, got {res.guest_errors}"


def test_max_insns_stops_a_runaway():
    from armvirt import paths, profile
    from armvirt.console import Console
    from armvirt.machine import Machine, MachineConfig
    m = Machine(MachineConfig(kernel=paths.image_path("memtouch.elf"), max_insns=100_000), profile.load("xgene"),
                console=Console(echo=False))
    res = m.run()
    assert res.reason == "insn-limit" and res.status != 0, f"got {res.reason} {res.status}"
    assert 100_000 <= res.insns < 100_000 + 1000, f"stopped at {res.insns} instructions"
