#!/usr/bin/env python3
"""Engine benchmark: armvirt against bare Unicorn, and a hypercall storm.

    python3 bench/engine.py [--quick] [--rounds N] [--json FILE]

compute:        images/compute.elf (compute_rounds patched) under armvirt and on bare
                Unicorn; MIPS = guest instructions / wall seconds, best of REPS runs.
hypercall-storm: images/hvc-storm.elf under armvirt; HVC64 exits / wall seconds of
                Machine.run(), summed over enough runs to time well.
linux:          Debian's kernel + initramfs (images/linux/out, images/linux/fetch.sh)
                with the stock command line, to the first user-space instruction, under
                armvirt (bench/linux_probe.py: `armvirt run` in a fresh process) and under
                qemu-system-aarch64 -M virt -cpu cortex-a57 TCG (to the kernel's
                "Run /init as init process", printed just before it executes /init), in
                the same run; both timed from process start.  Start-up: process start to
                the guest's first instruction.  QEMU is a reference only: qemu_s=n/a
                without it.
The last line is `engine: mips_ratio=<armvirt/raw> hypercalls_per_s=<n>`.
"""
import argparse
import gc
import json
import os
import re
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)   # run from a source tree as well as from an install

from elftools.elf.elffile import ELFFile  # noqa: E402
from unicorn import UC_ARCH_ARM64, UC_HOOK_INTR, UC_MODE_ARM, Uc  # noqa: E402

from armvirt import knobs  # noqa: E402
from armvirt.console import Console  # noqa: E402
from armvirt.machine import Machine, MachineConfig  # noqa: E402
from armvirt.profile import load as load_profile  # noqa: E402

IMAGES = os.path.join(ROOT, "images")
RAM_BASE, RAM_SIZE = 0x4000_0000, 128 << 20     # as images/run-unicorn.py
UART_BASE = 0x0900_0000
CHECKSUM = re.compile(r"compute: checksum=(0x[0-9a-f]+)")
REPS = 2                  # best of REPS for each MIPS figure
ROUNDS, QUICK_ROUNDS = 320, 16   # ~6 ms/round under armvirt here: ~2 s per full run
STORM_S, QUICK_STORM_S = 1.0, 0.3  # minimum total wall time of the hypercall storm


def patched_compute(rounds: int, tmpdir: str, image: str = "compute.elf") -> str:
    """Copy `image` with the 32-bit `compute_rounds` (.data) set to `rounds`."""
    return knobs.patched(os.path.join(IMAGES, image), rounds, tmpdir)


def run_armvirt(path: str, profile):
    """One Machine.run(); the Machine is built outside the timed region."""
    m = Machine(MachineConfig(kernel=path), profile, console=Console(echo=False))
    gc.collect()
    t0 = time.perf_counter()
    res = m.run()
    dt = time.perf_counter() - t0
    if res.status != 0:
        sys.exit(f"{path}: armvirt run failed: status={res.status} {res.reason} {res.message}")
    return dt, res


def run_raw(path: str):
    """The same ELF on bare Unicorn (as images/run-unicorn.py): plain RAM, UART DR
    captured through an mmio_map callback (no global memory hook, so no slowdown);
    the image's final PSCI `hvc` (UNDEF without EL2) stops the run."""
    uc = Uc(UC_ARCH_ARM64, UC_MODE_ARM)
    uc.mem_map(RAM_BASE, RAM_SIZE)
    out = bytearray()
    uc.mmio_map(UART_BASE, 0x1000, lambda uc, off, size, ud: 0, None,
                lambda uc, off, size, value, ud: out.append(value & 0xFF) if off == 0 else None, None)
    with open(path, "rb") as f:
        elf = ELFFile(f)
        for seg in elf.iter_segments():
            if seg["p_type"] == "PT_LOAD":   # .bss: mem_map memory is already zero
                uc.mem_write(seg["p_paddr"], seg.data())
        entry = elf.header["e_entry"]
    uc.hook_add(UC_HOOK_INTR, lambda uc, intno, ud: uc.emu_stop())
    # x0 = 0 (no DTB) and SP unset: the image's start.S sets its own stack.
    gc.collect()
    t0 = time.perf_counter()
    uc.emu_start(entry, 0)
    return time.perf_counter() - t0, out.decode(errors="replace")


def checksum(text: str, who: str) -> str:
    m = CHECKSUM.search(text)
    if not m:
        sys.exit(f"compute: no checksum line from {who}")
    return m.group(1)


def bench_compute(rounds: int, profile) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        path = patched_compute(rounds, tmp)
        av_s, raw_s, insns = [], [], None
        for _ in range(REPS):             # interleaved, best of REPS each
            dt, raw_out = run_raw(path)
            raw_s.append(dt)
            dt, res = run_armvirt(path, profile)
            av_s.append(dt)
            if insns not in (None, res.insns):
                sys.exit(f"compute: instruction count changed between runs ({insns} != {res.insns})")
            insns = res.insns
    # The program is deterministic and identical on both engines, so bare Unicorn
    # executes armvirt's exact count (checked once with run-unicorn.py --count:
    # 298967759 for 224 rounds on both); counting it here would need a hook that
    # slows the raw run.  The matching checksums below confirm the same work.
    av_sum, raw_sum = checksum("\n".join(res.console.lines), "armvirt"), checksum(raw_out, "raw Unicorn")
    if av_sum != raw_sum:
        sys.exit(f"compute: checksum mismatch: armvirt {av_sum} raw {raw_sum}")
    av_mips, raw_mips = insns / min(av_s) / 1e6, insns / min(raw_s) / 1e6
    print(f"compute: armvirt_mips={av_mips:.1f} raw_mips={raw_mips:.1f} insns={insns}")
    print(f"  rounds={rounds} checksum={av_sum} armvirt_s={[round(t, 3) for t in av_s]} "
          f"raw_s={[round(t, 3) for t in raw_s]}")
    return {"rounds": rounds, "insns": insns, "checksum": av_sum, "armvirt_s": av_s, "raw_s": raw_s,
            "armvirt_mips": av_mips, "raw_mips": raw_mips, "mips_ratio": av_mips / raw_mips}


def bench_hypercalls(min_seconds: float, profile) -> dict:
    """Run hvc-storm.elf (50,000 silent no-op hypercalls) until at least `min_seconds` of
    Machine.run() time is summed; its boot and one console line are in the time too."""
    path = os.path.join(IMAGES, "hvc-storm.elf")
    exits, seconds, runs = 0, 0.0, 0
    while seconds < min_seconds or runs < 2:
        dt, res = run_armvirt(path, profile)
        exits += sum(row["Samples"] for row in res.stats if row["VM-EXIT"] == "HVC64")
        seconds += dt
        runs += 1
    rate = exits / seconds
    print(f"hypercall-storm: exits={exits} seconds={seconds:.3f} hypercalls_per_s={rate:.0f}")
    print(f"  runs={runs} (each a whole hvc-storm.elf boot: 50,000 hypercalls, one console line)")
    return {"exits": exits, "seconds": seconds, "runs": runs, "hypercalls_per_s": rate}


def bench_timer_guest(rounds: int, profile, raw_mips: float) -> dict:
    """compute-tick.elf (the same work under a 1 kHz virtual timer tick) under armvirt,
    against bare Unicorn's MIPS on the tick-less compute.elf measured above: what the
    timer costs the host is the difference."""
    with tempfile.TemporaryDirectory() as tmp:
        path = patched_compute(rounds, tmp, "compute-tick.elf")
        times, res = [], None
        for _ in range(REPS):
            dt, res = run_armvirt(path, profile)
            times.append(dt)
    ticks = next((l for l in res.console.lines if l.startswith("compute: ticks=")), "compute: ticks=?")
    irqs = sum(r["Samples"] for r in res.stats if r["VM-EXIT"] == "IRQ")
    mips = res.insns / min(times) / 1e6
    print(f"  {ticks.split(':', 1)[1].strip()} irq_exits={irqs} armvirt_mips={mips:.0f} raw_mips={raw_mips:.0f}")
    return {"insns": res.insns, "irq_exits": irqs, "armvirt_s": times, "armvirt_mips": mips,
            "mips_ratio": mips / raw_mips}


def bench_spinlock(profile) -> dict:
    """spinlock.elf on 1 and on 4 vCPUs (one pCPU each, in deterministic turns):
    guest instructions per host second."""
    from armvirt.machine import Machine, MachineConfig
    out = {}
    for n in (1, 4):
        m = Machine(MachineConfig(kernel=os.path.join(IMAGES, "spinlock.elf"), smp=n), profile,
                    console=Console(echo=False))
        gc.collect()
        t0 = time.perf_counter()
        res = m.run()
        dt = time.perf_counter() - t0
        line = next((l for l in res.console.lines if "ok=" in l), "")
        if res.status != 0 or "ok=1" not in line:
            sys.exit(f"spinlock on {n} vCPUs failed: {res.reason} {line}")
        out[n] = {"insns": res.insns, "seconds": dt, "insns_per_s": res.insns / dt}
    print(f"spinlock: vcpus=1 insns_per_s={out[1]['insns_per_s']:.0f} "
          f"vcpus=4 insns_per_s={out[4]['insns_per_s']:.0f}")
    return out


def bench_compare() -> dict:
    """`armvirt compare` for the three designs, as a user runs it (a fresh process,
    imports included): wall-clock seconds.  Target: under 20 s on a 2-core machine."""
    import subprocess
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "armvirt", "compare", "--format", "json"],
                       capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        sys.exit(f"armvirt compare failed: {r.stderr.strip()}")
    rows = json.loads(r.stdout)["rows"]
    print(f"compare: designs=nvhe,vhe,type1 seconds={dt:.2f} "
          f"hypercall={'/'.join(str(rows['hypercall'][d]) for d in ('nvhe', 'vhe', 'type1'))}")
    return {"seconds": dt, "rows": rows}


LINUX_DIR = os.environ.get("ARMVIRT_LINUX_DIR", os.path.join(IMAGES, "linux", "out"))
LINUX_ARGS = ["-M", "virt,gic-version=2", "-smp", "2", "-m", "256M", "-append", "console=ttyAMA0"]
QEMU_INIT_MARKER = b"Run /init as init process"
QEMU_TIMEOUT_S = 600


def _pyc_env() -> dict:
    """A fresh process as a user's: bytecode cached (outside the tree), as pip leaves it."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = os.path.join(tempfile.gettempdir(), "armvirt-bench-pycache")
    return env


def run_linux_armvirt(kernel: str, initrd: str, env: dict) -> dict:
    import subprocess
    argv = [sys.executable, os.path.join(ROOT, "bench", "linux_probe.py"), *LINUX_ARGS,
            "-kernel", kernel, "-initrd", initrd, "--hyp-mode", "nvhe", "--quiet"]
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env, cwd=ROOT)
    m = re.search(r"probe: startup_s=([\d.]+) init_s=([\d.]+) insns_to_init=(\d+)", r.stderr)
    if r.returncode != 0 or not m:
        sys.exit(f"linux: armvirt did not reach user space (exit {r.returncode}): {r.stderr.strip()[-400:]}")
    return {"startup_s": float(m.group(1)), "armvirt_s": float(m.group(2)), "insns_to_init": int(m.group(3))}


def run_linux_qemu(kernel: str, initrd: str) -> float | None:
    """Seconds from starting qemu-system-aarch64 to the kernel's line before /init runs."""
    import shutil
    import subprocess
    qemu = shutil.which("qemu-system-aarch64")
    if qemu is None:
        return None
    argv = [qemu, *LINUX_ARGS[:2], "-cpu", "cortex-a57", *LINUX_ARGS[2:],
            "-kernel", kernel, "-initrd", initrd, "-display", "none", "-serial", "stdio",
            "-monitor", "none", "-nodefaults"]
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    seen, dt = b"", None
    try:
        while time.perf_counter() - t0 < QEMU_TIMEOUT_S:
            chunk = p.stdout.read1(4096)
            if not chunk:
                break
            seen = seen[-4096:] + chunk
            if QEMU_INIT_MARKER in seen:
                dt = time.perf_counter() - t0
                break
    finally:
        p.kill()
        p.wait()
    if dt is None:
        sys.exit(f"linux: QEMU did not print {QEMU_INIT_MARKER.decode()!r}")
    return dt


def bench_linux() -> dict | None:
    kernel, initrd = os.path.join(LINUX_DIR, "vmlinuz"), os.path.join(LINUX_DIR, "initramfs.cpio.gz")
    if not (os.path.isfile(kernel) and os.path.isfile(initrd)):
        print(f"linux: skipped ({kernel} or {initrd} missing: run images/linux/fetch.sh)")
        return None
    env = _pyc_env()
    runs = [run_linux_armvirt(kernel, initrd, env) for _ in range(REPS)]   # the first also fills the pyc cache
    if len({r["insns_to_init"] for r in runs}) != 1:
        sys.exit(f"linux: instructions to init changed between runs: {[r['insns_to_init'] for r in runs]}")
    best = min(runs, key=lambda r: r["armvirt_s"])
    startup = min(r["startup_s"] for r in runs)
    qemu_s = run_linux_qemu(kernel, initrd)
    ratio = "n/a" if qemu_s is None else f"{best['armvirt_s'] / qemu_s:.2f}"
    print(f"linux: insns_to_init={best['insns_to_init']} armvirt_s={best['armvirt_s']:.2f} "
          f"qemu_s={'n/a' if qemu_s is None else f'{qemu_s:.2f}'} ratio={ratio}")
    print(f"  startup_s={startup:.3f} (process start to the guest's first instruction) "
          f"armvirt_s={[round(r['armvirt_s'], 2) for r in runs]}")
    return {**best, "startup_s": startup, "armvirt_runs_s": [r["armvirt_s"] for r in runs], "qemu_s": qemu_s,
            "ratio": None if qemu_s is None else best["armvirt_s"] / qemu_s}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small round count and storm, for CI smoke runs")
    ap.add_argument("--rounds", type=int, help=f"compute rounds (default {ROUNDS}, --quick {QUICK_ROUNDS})")
    ap.add_argument("--json", metavar="FILE", help="also write the figures to FILE")
    ap.add_argument("--linux", action="store_true", help="only the Linux boot line")
    args = ap.parse_args()
    if args.linux:
        linux = bench_linux()
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"linux": linux}, f, indent=2)
                f.write("\n")
        return

    profile = load_profile("xgene")
    rounds = args.rounds or (QUICK_ROUNDS if args.quick else ROUNDS)
    compute = bench_compute(rounds, profile)
    timer = bench_timer_guest(rounds, profile, compute["raw_mips"])
    print(f"timer-guest: mips_ratio={timer['mips_ratio']:.2f}")
    spin = bench_spinlock(profile)
    storm = bench_hypercalls(QUICK_STORM_S if args.quick else STORM_S, profile)
    cmp = bench_compare()
    linux = bench_linux()
    ratio, rate = compute["mips_ratio"], storm["hypercalls_per_s"]
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"quick": args.quick, "compute": compute, "timer_guest": timer, "spinlock": spin, "hypercall_storm": storm,
                       "compare": cmp, "linux": linux, "mips_ratio": ratio, "hypercalls_per_s": rate}, f, indent=2)
            f.write("\n")
    print(f"engine: mips_ratio={ratio:.2f} hypercalls_per_s={rate:.0f}")


if __name__ == "__main__":
    main()
