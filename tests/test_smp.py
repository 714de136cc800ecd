"""SMP guests: PSCI CPU_ON/AFFINITY_INFO/CPU_OFF, exclusives between vCPUs, virtual
IPIs under both GICs, and determinism of the turn-based pCPU schedule."""
import pytest


def ok(res, image):
    assert (res.status, res.reason) == (0, "shutdown"), \
        f"{image}: expected status 0, got {res.status} ({res.reason}: {res.message})\n{res.console.text}"
    return res


@pytest.mark.parametrize("n", [2, 4])
def test_smp_hello_every_cpu_checks_in(boot, n):
    res = ok(boot("smp-hello.elf", smp=n), "smp-hello")
    online = [l for l in res.console.lines if l.endswith(" online") and l.startswith("smp-hello: cpu ")]
    assert len(online) == n, f"expected {n} CPUs online, got {online}"
    assert f"smp-hello: cpus={n} all online" in res.console.lines, res.console.text
    again = [l for l in res.console.lines if "CPU_ON again=-4 ALREADY_ON AFFINITY_INFO=0 ON ok" in l]
    assert len(again) == n, f"CPU_ON of a running CPU returns ALREADY_ON, AFFINITY_INFO ON: {again}"


@pytest.mark.parametrize("gic", [2, 3])
def test_spinlock_count_is_exact(boot, gic):
    res = ok(boot("spinlock.elf", smp=4, gic_version=gic), "spinlock")
    line = next(l for l in res.console.lines if l.startswith("spinlock: cpus=4 iterations="))
    assert line.endswith("count=40000 expected=40000 ok=1"), line


@pytest.mark.parametrize("gic", [2, 3])
def test_virtual_ipi_arrives_every_time(boot, gic):
    """Both variants: cpu 1 spinning (ipi) and asleep in WFI (ipi_wfi), 10 + 200 SGIs each."""
    res = ok(boot("ipi.elf", smp=2, gic_version=gic), "ipi")
    for name in ("ipi", "ipi_wfi"):
        line = next(l for l in res.console.lines if l.startswith(f"{name}: sent="))
        assert "sent=210 received=210 lost=0 spurious=0" in line, f"{name}: expected 210 SGIs received, got {line}"
    kind = "SYS64" if gic == 3 else "DABT_LOW"      # ICC_SGI1R_EL1 vs GICD_SGIR traps
    sends = sum(r["Samples"] for r in res.stats if r["vCPU"] == 0 and r["VM-EXIT"] == kind)
    assert sends >= 420, f"every SGI send traps ({kind}): expected >= 420, got {sends}"
    irq_exits = sum(r["Samples"] for r in res.stats if r["vCPU"] == 1 and r["VM-EXIT"] == "IRQ")
    assert irq_exits >= 210, f"every SGI to the spinning cpu 1 is a physical IPI exit: expected >= 210, got {irq_exits}"


@pytest.mark.parametrize("gic", [2, 3])
@pytest.mark.parametrize("pcpus", [None, 2])
def test_smp_with_the_guest_mmu_on(boot, gic, pcpus):
    """Every vCPU's stage-1 MMU on: the host's monitor clear on each entry must not go
    through the guest's translation (it once took an instruction abort at the host's
    CLREX page, delivered into the guest)."""
    res = ok(boot("smp-mmu.elf", smp=4, gic_version=gic, pcpus=pcpus), "smp-mmu")
    want = "smp-mmu: cpus=4 mmu_on=4 count=8000 expected=8000 ipis=60/60 ok=1"
    assert want in res.console.lines, f"expected {want!r}:\n{res.console.text}"
    assert not res.guest_errors, f"no guest errors expected, got {res.guest_errors[:5]}"


def test_smp_runs_are_deterministic(xgene, boot):
    """Two runs: this one, and boot's of the same config (made earlier, in this process
    or another worker's, and read by the other ipi tests)."""
    from armvirt import paths
    from armvirt.console import Console
    from armvirt.machine import Machine, MachineConfig
    runs = [boot("ipi.elf", smp=2)]
    m = Machine(MachineConfig(kernel=paths.image_path("ipi.elf"), smp=2, max_insns=400_000_000), xgene,
                console=Console(echo=False))
    runs.append(m.run())
    first, second = ((r.cycles, r.insns, r.console.lines, r.stats) for r in runs)
    assert first == second, "same input, same numbers, bit for bit"


def test_secondaries_start_off(xgene):
    from armvirt import paths
    from armvirt.machine import Machine, MachineConfig
    from armvirt.console import Console
    m = Machine(MachineConfig(kernel=paths.image_path("hello.elf"), smp=3), xgene, console=Console(echo=False))
    assert [v.powered_on for v in m.vcpus] == [True, False, False]
    assert [v.affinity_state() for v in m.vcpus] == [0, 1, 1], "AFFINITY_INFO: ON, OFF, OFF"


LDXR = lambda rt, rn: 0xC85F7C00 | rn << 5 | rt          # LDXR Xt, [Xn]
STXR = lambda rs, rt, rn: 0xC8007C00 | rs << 16 | rn << 5 | rt   # STXR Ws, Xt, [Xn]


@pytest.mark.parametrize("shared", [False, True])
def test_an_exit_between_ldxr_and_stxr_clears_the_monitor_on_a_shared_host(shared):
    """The engine's monitor is value-based: on a host running several vCPUs, every entry
    into a guest clears it, as an exception return does (so another vCPU's store of
    the same value cannot let a stale reservation succeed)."""
    from tests.harness import Harness, hvc, movz
    from engine import layout
    addr = layout.RAM_BASE + 0x2000
    h = Harness([movz(0, addr >> 16, 16), LDXR(1, 0), hvc(1), STXR(2, 1, 0), hvc(2)])
    h.lowvisor.clear_monitor = shared
    ex = h.next_exit()
    assert ex.esr & 0xFFFF == 1, f"expected the first HVC, got ESR {ex.esr:#x}"
    cpu = h.host.pcpus[0]
    before = (cpu.st.insns, cpu.st.charged)
    ex = h.next_exit()
    assert ex.esr & 0xFFFF == 2, f"expected the second HVC, got ESR {ex.esr:#x}"
    status = h.ctx.x(2)
    assert status == (1 if shared else 0), \
        f"STXR status after an exit: expected {1 if shared else 0} (shared={shared}), got {status}"
    assert cpu.st.insns - before[0] == 2, f"the CLREX stub is not a guest instruction: {cpu.st.insns - before[0]}"


def _two_pcpu_vm():
    from armvirt import profile
    from engine import layout
    from host_kernel.kvm import Clocking, Host
    p = profile.load("xgene")
    host = Host(p.costs, Clocking(p.cpu_hz, p.cntfrq_hz, p.cpi), npcpus=2)
    vm = host.create_vm(nr_vcpus=2)
    slot = vm.add_ram(layout.RAM_BASE, 16 << 20)
    return host, vm, slot, vm.create_vcpu(0, pcpu=0), vm.create_vcpu(1, pcpu=1)


def _write(slot, addr, words):
    import struct
    from engine import layout
    off = addr - layout.RAM_BASE
    slot.buf[off:off + 4 * len(words)] = b"".join(struct.pack("<I", w) for w in words)


def _run_to_trap(v):
    from el2 import syndrome as syn
    from host_kernel.mmu import handle_guest_abort
    while True:
        ex = v.lowvisor.run(v.ctx)
        if ex.ec not in (syn.EC_IABT_LOW, syn.EC_DABT_LOW):
            return ex
        handle_guest_abort(v, ex)


def test_cross_modified_code_runs_new_on_the_other_pcpu_after_ic_ivau():
    """vCPU1 runs `movz x0,#1`; vCPU0 (another pCPU) stores `movz x0,#2` over it and
    does IC IVAU; DSB ISH; ISB (ARM ARM B2.2.5, concurrent modification): vCPU1 must
    then execute the new instruction, though its core had translated the old one."""
    from engine import layout
    from host_kernel.vcpu import BootState
    from tests.harness import hvc, movz
    host, vm, slot, v0, v1 = _two_pcpu_vm()
    X, Y = layout.RAM_BASE + 0x1000, layout.RAM_BASE + 0x2000
    new = movz(0, 2)
    movk = lambda rd, imm16, shift: 0xF2800000 | (shift // 16) << 21 | imm16 << 5 | rd
    _write(slot, X, [movz(0, 1), hvc(0)])
    _write(slot, Y, [movz(1, X >> 16, 16), movk(1, X & 0xFFFF, 0), movz(2, new & 0xFFFF), movk(2, new >> 16, 16),
                     0xB9000022,             # STR W2, [X1]
                     0xD50B7521,             # IC IVAU, X1
                     0xD5033B9F, 0xD5033FDF,  # DSB ISH; ISB
                     hvc(0)])
    v1.reset(BootState(entry=X))
    _run_to_trap(v1)
    assert v1.ctx.x(0) == 1, f"expected the original code to return 1, got {v1.ctx.x(0)}"
    flushes = _count_code_flushes(host.pcpus[1])
    v0.reset(BootState(entry=Y))
    _run_to_trap(v0)
    v1.reset(BootState(entry=X))
    _run_to_trap(v1)
    assert v1.ctx.x(0) == 2, f"expected the modified code to return 2 after IC IVAU, got {v1.ctx.x(0)}"
    assert flushes == [], f"IC IVAU drops the code of its page only, not all: {len(flushes)} full flushes"


def _count_code_flushes(cpu) -> list:
    seen, flush = [], cpu.uc.ctl_flush_tb
    cpu.uc.ctl_flush_tb = lambda: (seen.append(1), flush())[1]
    return seen


def test_ic_iallu_drops_all_code_on_the_other_pcpu():
    from engine import layout
    from host_kernel.vcpu import BootState
    from tests.harness import hvc
    host, vm, slot, v0, v1 = _two_pcpu_vm()
    flushes = _count_code_flushes(host.pcpus[1])
    _write(slot, layout.RAM_BASE + 0x1000, [0xD508711F, 0xD5033B9F, hvc(0)])   # IC IALLUIS; DSB ISH
    v0.reset(BootState(entry=layout.RAM_BASE + 0x1000))
    _run_to_trap(v0)
    assert flushes == [1], f"expected one full drop of translated code on pCPU 1, got {flushes}"


def test_a_tlbi_reaches_every_other_pcpu():
    from engine import layout
    from host_kernel.vcpu import BootState
    from tests.harness import hvc
    host, vm, slot, v0, v1 = _two_pcpu_vm()
    seen = []
    host.pcpus[1].apply_maintenance = lambda m, source=None: seen.append(m)
    _write(slot, layout.RAM_BASE + 0x1000, [0xD508831F, 0xD5033B9F, hvc(0)])   # TLBI VMALLE1IS; DSB ISH
    v0.reset(BootState(entry=layout.RAM_BASE + 0x1000))
    _run_to_trap(v0)
    assert seen == [1], f"expected one TLB broadcast (MAINT_TLB) to pCPU 1, got {seen}"


def test_cpu_on_starts_the_target_at_the_callers_time(xgene):
    """PSCI CPU_ON powers the target on now: its pCPU's clock, and so the counter it
    reads, starts at the caller's time (Linux printed its secondaries' first lines at
    8796 s when they started at 0: sched_clock saw the counter go backwards)."""
    from host_kernel import psci
    from host_kernel.kvm import Clocking, Host
    from tests.harness import ENTRY
    host = Host(xgene.costs, Clocking(xgene.cpu_hz, xgene.cntfrq_hz, xgene.cpi), npcpus=2)
    vm = host.create_vm(nr_vcpus=2)
    v0, v1 = vm.create_vcpu(0, pcpu=0), vm.create_vcpu(1, pcpu=1)
    v0.cpu.advance_idle(5_000_000)
    vm.running = v0
    for i, value in enumerate((psci.PSCI_CPU_ON64, 1, ENTRY, 0)):
        v0.ctx.set_x(i, value)
    assert psci.call(v0, psci.PSCI_CPU_ON64) == psci.SUCCESS
    assert v1.cpu.cycles == v0.cpu.cycles == 5_000_000, \
        f"expected vCPU1 to start at the caller's 5000000 cycles, got {v1.cpu.cycles} (caller {v0.cpu.cycles})"


def test_d_int_names_the_vcpu_that_took_the_exception_on_a_shared_pcpu(cli_run, tmp_path):
    """el0 takes its SVC, page fault and UNDEF on vCPU 0; with both vCPUs on one pCPU the
    `-d int` lines must still name vCPU 0 (the pCPU's hook once named the last vCPU built)."""
    log = tmp_path / "int.log"
    r = cli_run("run", "-smp", 2, "--pcpus", 1, "-d", "int", "-D", log, "el0")
    assert r.returncode == 0, f"expected exit 0, got {r.returncode}: {r.stderr}"
    taken = [l for l in log.read_text().splitlines() if "exception taken to EL1" in l]
    named = sorted({l.split()[1] for l in taken})
    assert len(taken) == 6 and named == ["vcpu0:"], \
        f"expected 6 lines, all naming vcpu0; observed {len(taken)} naming {named}"
