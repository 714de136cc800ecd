"""The instruction counter equals what the core executed when the fast path stops the
engine at a block boundary (the end of a turn, an IRQ deadline, --max-insns): the
block whose hook asked for the stop does not run there, so it must not be counted
there either (it is counted when it really runs, after the run goes on).

The guest is a countdown loop whose executed instruction count is known exactly from
its own state: with the PC at the loop head and x0 = r, it has executed
1 + 2 * (N - r) instructions (MOVZ, then a SUB and a CBNZ per iteration)."""
from __future__ import annotations

import pytest
from unicorn import arm64_const as A

from el2 import syndrome as syn
from el2.lowvisor import ARM_EXCEPTION_IRQ, ARM_EXCEPTION_TRAP, EXIT_INSN_LIMIT, EXIT_TURN
from engine.core import NEVER
from host_kernel.mmu import handle_guest_abort
from tests.harness import ENTRY, Harness, hvc, movz

N = 20000
SUB_X0_1, CBNZ_X0_BACK = 0xD1000400, 0xB5FFFFE0      # SUB X0, X0, #1; CBNZ X0, .-4
LOOP = ENTRY + 4
CODE = [movz(0, N), SUB_X0_1, CBNZ_X0_BACK, hvc(0)]
ALL = 1 + 2 * N + 1                                  # to the HVC, which retires when it traps
STEP = 37                                            # cycles between stops: no multiple of a block
IRQ_STEP = 3037


def executed(pc: int, x0: int) -> int:
    """At a block boundary: before the MOVZ, at the loop head, or at the HVC."""
    at = {ENTRY: 0, LOOP: 1 + 2 * (N - x0), ENTRY + 12: 1 + 2 * N}
    assert pc in at, f"expected a stop at a block boundary {[hex(a) for a in at]}, observed pc={pc:#x}"
    return at[pc]


def run_with_stops(arm, on_stop):
    """Run CODE to its HVC; before each entry arm(cpu) sets the next stop, and
    on_stop(h, ex) checks each stop.  Returns (harness, stops, final exit)."""
    h = Harness(CODE)
    cpu, stops, resume = h.host.pcpus[0], 0, False
    while True:
        assert stops < 4 * ALL, f"no progress: {stops} stops after {cpu.insns} instructions"
        arm(cpu)
        ex = h.lowvisor.run(h.ctx, resume)
        resume = False
        if ex.code == ARM_EXCEPTION_TRAP and ex.ec in (syn.EC_IABT_LOW, syn.EC_DABT_LOW):
            handle_guest_abort(h.vcpu, ex)
            continue
        if ex.code == ARM_EXCEPTION_TRAP:
            return h, stops, ex
        stops += 1
        on_stop(h, ex)
        resume = ex.code == EXIT_TURN




def test_turn_ends_count_only_what_ran():
    def arm(cpu):
        cpu.st.turn_deadline = cpu.cycles + STEP

    def on_stop(h, ex):
        cpu = h.host.pcpus[0]
        assert ex.code == EXIT_TURN, f"expected a turn end, observed exit code {ex.code}"
        pc, x0 = cpu.uc.reg_read(A.UC_ARM64_REG_PC), cpu.uc.reg_read(A.UC_ARM64_REG_X0)
        assert cpu.insns == executed(pc, x0), \
            f"turn end at x0={x0}: executed {executed(pc, x0)}, counted {cpu.insns}"

    h, stops, ex = run_with_stops(arm, on_stop)
    cpu = h.host.pcpus[0]
    assert stops > 10, f"expected many turn ends, observed {stops}"
    assert (ex.ec, cpu.insns) == (syn.EC_HVC64, ALL), \
        f"expected the HVC after {ALL} instructions, observed EC {ex.ec:#x} after {cpu.insns}"


def test_irq_deadlines_count_only_what_ran():
    def arm(cpu):
        # Past the entry's own charges (the world switch in), else no block would run.
        cpu.st.host_deadline = cpu.cycles + IRQ_STEP

    def on_stop(h, ex):
        cpu = h.host.pcpus[0]
        assert ex.code == ARM_EXCEPTION_IRQ, f"expected an IRQ exit, observed exit code {ex.code}"
        pc, x0 = h.ctx.pc, h.ctx.x(0)
        assert cpu.insns == executed(pc, x0), \
            f"IRQ at x0={x0}: executed {executed(pc, x0)}, counted {cpu.insns}"

    h, stops, ex = run_with_stops(arm, on_stop)
    assert stops > 10, f"expected many IRQ exits, observed {stops}"
    assert h.host.pcpus[0].insns == ALL, f"expected {ALL} instructions in all, observed {h.host.pcpus[0].insns}"


@pytest.mark.parametrize("limit", [1, 2, 3, 4, 500, 1001])
def test_insn_limit_stops_at_the_first_boundary_at_or_after_it(limit):
    """--max-insns N: the guest has executed N instructions or the few more of the
    block that reaches N, and that is what is counted."""
    seen = []

    def arm(cpu):
        if not seen:
            cpu.set_insn_limit(limit)

    def on_stop(h, ex):
        cpu = h.host.pcpus[0]
        assert ex.code == EXIT_INSN_LIMIT, f"expected the limit, observed exit code {ex.code}"
        ran = executed(h.ctx.pc, h.ctx.x(0))
        seen.append((cpu.insns, ran))
        cpu.set_insn_limit(NEVER)

    run_with_stops(arm, on_stop)
    assert len(seen) == 1, f"expected one stop at the limit, observed {seen}"
    counted, ran = seen[0]
    assert counted == ran and limit <= ran < limit + 3, \
        f"limit {limit}: expected counted == executed in [{limit}, {limit + 3}), observed counted {counted}, " \
        f"executed {ran}"


def test_a_stale_fast_path_is_refused_with_one_line(tmp_path):
    """engine.fastpath checks the source id the build embedded against fastpath.c/.h."""
    from engine import fastpath, fastpath_source
    ok = tmp_path / "ok.so"
    ok.write_bytes(b"\0ELF..." + fastpath_source.MARKER + fastpath_source.source_id().encode() + b"\0")
    fastpath.check_built(str(ok))
    for name, blob in (("old.so", fastpath_source.MARKER + b"00000000"), ("none.so", b"\0ELF no id\0")):
        bad = tmp_path / name
        bad.write_bytes(blob)
        with pytest.raises(fastpath.StaleFastPath) as e:
            fastpath.check_built(str(bad))
        msg = str(e.value)
        assert "\n" not in msg and "pip install -e ." in msg and e.value.code == msg, \
            f"{name}: expected a one-line error naming `pip install -e .`, observed {msg!r}"
    built = fastpath_source.embedded_id(fastpath._spec.origin)
    assert built == fastpath_source.source_id(), \
        f"the extension in use carries source id {built}, the sources are {fastpath_source.source_id()}"
