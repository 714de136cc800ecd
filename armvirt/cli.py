"""armvirt's command line, with QEMU's habits for `run`."""
from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import sys
from dataclasses import dataclass

from armvirt import compare, compare_report, paths, profile as profiles, report
from armvirt.console import Console
from armvirt.boot import BootError
from armvirt.serial import SerialError, SerialQuit, parse_serial, stdin_input
from armvirt.loader import BadImage
from armvirt.machine import ConfigError, Machine, MachineConfig, boot_plan, make_host, run_machines
from el2.design import Design
from engine.trace import CATEGORIES, Tracer

EXIT_USAGE = 2


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """No prefix abbreviations, as QEMU: `-s` is never read as `-smp`."""
    def __init__(self, *args, **kw):
        kw.setdefault("allow_abbrev", False)
        super().__init__(*args, **kw)

    def _get_option_tuples(self, option_string):
        # Python 3.11 still prefix-matches single-dash options with allow_abbrev=False.
        return []

    def error(self, message):             # one line, exit code 2, like every other bad input
        raise UsageError(message)


def parse_size(text: str) -> int:
    """QEMU -m syntax: a number with an optional K/M/G/T suffix; no suffix means MiB."""
    m = re.fullmatch(r"\s*(\d+)\s*([kKmMgGtT]?)[bB]?\s*", text or "")
    if not m:
        raise UsageError(f"-m {text!r}: expected a size such as 128M or 1G")
    n = int(m.group(1)) << {"": 20, "k": 10, "m": 20, "g": 30, "t": 40}[m.group(2).lower()]
    if n == 0:
        raise UsageError(f"-m {text!r}: RAM size must be positive")
    return n


@dataclass
class MachineOpts:
    gic_version: int = 2
    dumpdtb: str | None = None      # write the DTB there and exit, as QEMU does


def parse_machine(texts: list[str] | str) -> MachineOpts:
    """-M/-machine [virt][,gic-version=2|3][,dumpdtb=FILE]; repeated options merge as in QEMU
    (`-M virt,gic-version=3 -machine dumpdtb=q.dtb`)."""
    opts = MachineOpts()
    for text in [texts] if isinstance(texts, str) else texts:
        items = text.split(",")
        if items and "=" not in items[0]:
            name, items = items[0], items[1:]
            if name != "virt":
                raise UsageError(f"-M {name!r}: unknown machine type (armvirt emulates 'virt')")
        for o in items:
            k, eq, v = o.partition("=")
            if k == "gic-version":
                if v not in ("2", "3"):
                    raise UsageError(f"-M virt,gic-version={v}: must be 2 or 3")
                opts.gic_version = int(v)
            elif k == "dumpdtb":
                if not v:
                    raise UsageError("-M virt,dumpdtb=FILE: a file name is required")
                opts.dumpdtb = v
            else:
                raise UsageError(f"-M virt: unknown property {k!r}")
    return opts


def parse_count(text: str, what: str) -> int:
    m = re.fullmatch(r"\s*(\d+)\s*", text or "")
    if not m:
        raise UsageError(f"{what} {text!r}: expected a positive integer")
    return int(m.group(1))


def parse_debug(text: str | None) -> set[str]:
    if not text:
        return set()
    cats = {c.strip() for c in text.split(",") if c.strip()}
    bad = cats - set(CATEGORIES)
    if bad:
        raise UsageError(f"-d {','.join(sorted(bad))}: unknown log item (known: {', '.join(CATEGORIES)})")
    return cats


def _add_common(p: argparse.ArgumentParser, formats=report.FORMATS) -> None:
    p.add_argument("--profile", default="xgene", help="cost profile name or TOML path (see `armvirt profiles`)")
    p.add_argument("--format", default="simple", choices=formats, help="table format")


def _add_gic_features(p: argparse.ArgumentParser) -> None:
    p.add_argument("--gic", default="2", choices=("2", "3"), help="GIC version")
    p.add_argument("--no-vgic", action="store_true", help="trap and emulate the CPU interface")
    p.add_argument("--no-vtimer", action="store_true", help="trap and emulate the virtual timer")
    p.add_argument("--lrs", default="4", help="number of list registers")


def _add_switching(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--eager-switch", dest="lazy", action="store_false", default=None,
                   help="switch every register group on every trap (no lazy/deferred switching)")
    g.add_argument("--lazy-switch", dest="lazy", action="store_true",
                   help="lazy FP, used LRs only, timer/VMCR deferred (default for vhe)")
    p.add_argument("--fp", default=None, choices=("lazy", "eager"),
                   help="FP/SIMD switching on its own (default: as the lazy/eager switching)")


def _add_design(p: argparse.ArgumentParser) -> None:
    p.add_argument("--hyp-mode", default="nvhe", choices=("nvhe", "kvm-split", "vhe", "type1"),
                   help="hypervisor design: split-mode KVM (nvhe), KVM with VHE, or a Xen-like type 1")
    _add_switching(p)


def _add_features(p: argparse.ArgumentParser) -> None:
    _add_gic_features(p)
    _add_design(p)


def _fp(a) -> bool | None:
    return None if a.fp is None else a.fp == "lazy"


def _design_note(a) -> str:
    """' under vhe (eager)' etc. for titles; nothing for the default split mode."""
    d = Design.make(a.hyp_mode, a.lazy, _fp(a))
    return "" if d == Design.make("nvhe") else f" under {d.label}" + ("" if a.fp is None else f", {a.fp} FP")


def _gic_features(a) -> dict:
    return {"gic_version": int(a.gic), "vgic": not a.no_vgic, "vtimer": not a.no_vtimer,
            "nr_lr": parse_count(a.lrs, "--lrs")}


def _switching(a) -> dict:
    return {"lazy": a.lazy, "lazy_fp": _fp(a)}


def _design(a) -> dict:
    return {"hyp_mode": a.hyp_mode, **_switching(a)}


def _features(a) -> dict:
    return {**_gic_features(a), **_design(a)}


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="armvirt", description="ARMv8 virtualization platform: a KVM/ARM split-mode model "
                                             "on the Unicorn engine")
    sub = ap.add_subparsers(dest="cmd", required=True, parser_class=_Parser)
    r = sub.add_parser("run", help="boot a guest image (QEMU-style options)")
    r.add_argument("image", nargs="?", help="guest image (same as -kernel)")
    r.add_argument("-kernel", dest="kernel")
    r.add_argument("-M", "-machine", dest="machine", action="append", default=[],
                   help="virt[,gic-version=2|3][,dumpdtb=FILE] (repeatable, merged as in QEMU)")
    r.add_argument("-cpu", dest="cpu", default="cortex-a57")
    r.add_argument("-smp", dest="smp", default="1")
    r.add_argument("-m", dest="mem", default="128M")
    r.add_argument("-append", dest="append", default="")
    r.add_argument("-initrd", dest="initrd", default=None, help="load FILE into RAM above the kernel "
                   "(its range in /chosen linux,initrd-start/-end)")
    r.add_argument("-dtb", dest="dtb", default=None, help="use FILE as the device tree (bootargs, initrd, "
                   "/memory and /psci are patched in, as QEMU does)")
    r.add_argument("-d", dest="debug", default=None, help=f"log items: {','.join(CATEGORIES)}")
    r.add_argument("-D", dest="logfile", default=None, help="write the -d log to this file")
    r.add_argument("-nographic", action="store_true", help="accepted for QEMU compatibility")
    r.add_argument("-serial", dest="serial", default="stdio",
                   help="the PL011: stdio (output to stdout, input from stdin; the default), "
                        "file:PATH (output only) or null")
    r.add_argument("-no-reboot", "--no-reboot", dest="no_reboot", action="store_true",
                   help="exit instead of rebooting on PSCI SYSTEM_RESET")
    r.add_argument("--max-insns", default=None, help="stop a runaway guest after N instructions")
    r.add_argument("--lrs", default="4", help="number of GICv2 list registers")
    r.add_argument("--quantum", default="20000", help="SMP: cycles of virtual time per pCPU turn")
    r.add_argument("--pcpus", default=None, help="physical CPUs of the host (default: the largest -smp)")
    r.add_argument("--vm", action="append", default=[], metavar="'IMAGE [-smp N] [-m SIZE] [-append ARGS] [-initrd F] [-dtb F] [-name NAME]'",
                   help="another VM on the same host (repeatable); its vCPUs share the pCPUs")
    r.add_argument("--no-vgic", action="store_true", help="no virtual CPU interface: every GICC access traps")
    r.add_argument("--no-vtimer", action="store_true", help="the virtual timer traps and is emulated")
    r.add_argument("--quiet", action="store_true", help="no run summary")
    _add_design(r)
    _add_common(r, ("simple", "github", "json", "plain", "grid"))
    w = sub.add_parser("world-switch", help="world-switch cost table, from a real hypercall")
    _add_common(w)
    _add_features(w)
    t = sub.add_parser("trap-path", help="the ordered steps of a trap path and their cycles")
    t.add_argument("path", choices=sorted(paths.PATHS))
    _add_common(t)
    _add_features(t)
    c = sub.add_parser("compare", help="the microbenchmark guest under each hypervisor design")
    c.add_argument("--designs", default="nvhe,vhe,type1", help="comma-separated: nvhe (kvm-split), vhe, type1")
    c.add_argument("--profile", default="xgene", help="cost profile name or TOML path (see `armvirt profiles`)")
    c.add_argument("--format", default="simple", choices=compare_report.FORMATS, help="table format")
    c.add_argument("--plot", default=None, metavar="FILE.png|FILE.svg",
                   help="write a grouped bar chart of the table and the world-switch groups per design")
    c.add_argument("--breakdown", default=None, choices=compare_report.OPERATIONS,
                   help="show the steps of this operation's path under each design")
    _add_gic_features(c)
    _add_switching(c)                     # for every design compared
    d = sub.add_parser("demo", help="boot the hypercall image, then show its tables")
    _add_common(d, ("simple", "github", "json"))
    p = sub.add_parser("profiles", help="list cost profiles and their sources")
    p.add_argument("--show", default=None, help="print every cost of one profile with its source")
    p.add_argument("--format", default="simple", choices=report.FORMATS)
    return ap


def _load_profile(name: str):
    try:
        return profiles.load(name)
    except profiles.ProfileError as e:
        raise UsageError(str(e)) from None


def _vm_spec(text: str, index: int) -> dict:
    """One --vm: an image and the per-VM options (the host-wide ones stay global)."""
    vp = _Parser(prog="--vm", add_help=False)
    vp.add_argument("image")
    vp.add_argument("-smp", default="1")
    vp.add_argument("-m", dest="mem", default="128M")
    vp.add_argument("-append", default="")
    vp.add_argument("-initrd", default=None)
    vp.add_argument("-dtb", default=None)
    vp.add_argument("-name", default=None)
    try:
        words = shlex.split(text)
    except ValueError as e:
        raise UsageError(f"--vm {text!r}: {e}") from None
    try:
        v = vp.parse_args(words)
    except UsageError as e:
        raise UsageError(f"--vm {text!r}: {e}") from None
    return {"kernel": v.image, "smp": parse_count(v.smp, "-smp"), "ram_size": parse_size(v.mem),
            "append": v.append, "initrd": v.initrd, "dtb": v.dtb, "name": v.name or f"vm{index}"}


def _run_configs(a) -> list[MachineConfig]:
    image = a.kernel or a.image
    if a.kernel and a.image:
        raise UsageError("run: give the image either as IMAGE or with -kernel, not both")
    if not image and not a.vm:
        raise UsageError("run: no guest image (give IMAGE, -kernel IMAGE or --vm 'IMAGE ...')")
    if a.cpu not in ("cortex-a57", "host", "max"):
        raise UsageError(f"-cpu {a.cpu!r}: armvirt models a cortex-a57 class core")
    if not image and (a.smp != "1" or a.mem != "128M" or a.append or a.initrd or a.dtb):
        raise UsageError("run: -smp, -m, -append, -initrd and -dtb describe IMAGE; with only --vm, "
                         "give them inside each --vm")
    specs = []
    if image:
        specs.append({"kernel": image, "ram_size": parse_size(a.mem), "smp": parse_count(a.smp, "-smp"),
                      "append": a.append, "initrd": a.initrd, "dtb": a.dtb, "name": "vm0"})
    specs += [_vm_spec(t, len(specs) + i) for i, t in enumerate(a.vm)]
    names = [sp["name"] for sp in specs]
    if len(set(names)) != len(names):
        raise UsageError(f"--vm: VM names must differ (got {', '.join(names)})")
    common = dict(gic_version=parse_machine(a.machine).gic_version, nr_lr=parse_count(a.lrs, "--lrs"),
                  no_reboot=a.no_reboot, vgic=not a.no_vgic, vtimer=not a.no_vtimer,
                  quantum=parse_count(a.quantum, "--quantum"), **_design(a),
                  pcpus=parse_count(a.pcpus, "--pcpus") if a.pcpus else max(sp["smp"] for sp in specs),
                  max_insns=parse_count(a.max_insns, "--max-insns") if a.max_insns else None)
    return [MachineConfig(**sp, **common) for sp in specs]


def _result_json(res) -> dict:
    return {"status": res.status, "reason": res.reason, "message": res.message,
            "console": res.console.lines, "guest_instructions": res.insns,
            "cycles": res.cycles, "profile": res.profile, "exits": res.stats,
            "counters": res.counters, "guest_errors": res.guest_errors,
            "stage2_pages": res.extra["stage2_pages"], "resets": res.resets,
            "first_el0": res.extra.get("first_el0")}


def _print_summary(res, fmt: str, name: str | None) -> None:
    out = sys.stdout
    who = f"{name}: " if name else ""
    out.write(f"\n==== armvirt: {who}{res.reason}, exit status {res.status}, profile {res.profile}\n")
    out.write(f"guest instructions: {res.insns:,}   modeled cycles: {res.cycles:,}   "
              f"stage-2 pages: {res.extra['stage2_pages']:,}\n")
    first = res.extra.get("first_el0")
    if first is not None:
        out.write(f"first user-space instruction: vCPU{first['vcpu']} after {first['insns']:,} guest "
                  f"instructions (vCPU{first['vcpu']}: {first['vcpu_insns']:,}), at {first['cycles']:,} "
                  f"modeled cycles = {first['guest_seconds']:.3f} s of guest time\n")
    out.write(report.table(res.stats, fmt) + "\n")
    for e in res.guest_errors[:10]:
        out.write(f"guest error: {e}\n")
    if len(res.guest_errors) > 10:
        out.write(f"guest error: ... {len(res.guest_errors) - 10} more\n")


def cmd_dumpdtb(a, path: str) -> int:
    """-M virt,dumpdtb=FILE: the DTB the guest would get (with -kernel, its /chosen
    bootargs and initrd too), written to FILE; then exit 0 as QEMU does."""
    if a.vm:
        raise UsageError("-M virt,dumpdtb=FILE: dumps the DTB of IMAGE, not of --vm guests")
    image = a.kernel or a.image
    if not image and (a.append or a.initrd):
        raise UsageError("-append and -initrd are only allowed with a kernel image (-kernel)")
    cfg = MachineConfig(kernel=image, ram_size=parse_size(a.mem), smp=parse_count(a.smp, "-smp"),
                        gic_version=parse_machine(a.machine).gic_version, append=a.append,
                        initrd=a.initrd, dtb=a.dtb)
    blob = boot_plan(cfg, _load_profile(a.profile)).dtb
    try:
        with open(path, "wb") as f:
            f.write(blob)
    except OSError as e:
        raise UsageError(f"-M virt,dumpdtb={path}: cannot write: {e.strerror or e}") from None
    print(f"armvirt: info: dtb dumped to {path}. Exiting.", file=sys.stderr)
    return 0


def cmd_run(a) -> int:
    dump = parse_machine(a.machine).dumpdtb
    if dump:
        return cmd_dumpdtb(a, dump)
    cfgs = _run_configs(a)
    cats = parse_debug(a.debug)
    prof = _load_profile(a.profile)
    log = open(a.logfile, "w") if a.logfile else None
    as_json = a.format == "json"
    many = len(cfgs) > 1
    try:
        serial = parse_serial(a.serial)
    except SerialError as e:
        raise UsageError(str(e)) from None
    serial_out = serial_in = None
    try:
        trace = Tracer(cats, log)
        host = make_host(cfgs[0], prof, trace)
        machines = []
        for i, c in enumerate(cfgs):
            console = Console(echo=not as_json, prefix=f"[{c.name}] " if many else "")
            rx = None
            if i == 0 and serial.kind == "file":       # -serial describes the first VM's PL011
                try:
                    serial_out = open(serial.path, "w", encoding="latin-1", newline="")
                except OSError as e:
                    raise UsageError(f"-serial file:{serial.path}: {e.strerror or e}") from None
                console = Console(out=serial_out)
            elif i == 0 and serial.kind == "null":
                console = Console(echo=False)
            elif i == 0 and serial.kind == "stdio" and serial_in is None:
                rx = serial_in = stdin_input(before_wait=sys.stdout.flush)
            machines.append(Machine(c, prof, console=console, trace=trace, host=host, serial_input=rx))
        results = run_machines(machines)
    finally:
        if serial_in is not None:
            serial_in.restore()          # the terminal is restored on every way out
        if serial_out is not None:
            serial_out.close()
        if log:
            log.close()
    if as_json:
        doc = _result_json(results[0]) if not many else {
            "vms": [{"name": c.name, **_result_json(r)} for c, r in zip(cfgs, results)]}
        print(json.dumps(doc, indent=2))
    elif not a.quiet:
        for c, res in zip(cfgs, results):
            _print_summary(res, a.format, c.name if many else None)
    for c, res in zip(cfgs, results):
        if res.message:
            print(f"armvirt: {c.name + ': ' if many else ''}{res.message}", file=sys.stderr)
    return max(res.status for res in results)


def _path_json(run: paths.PathRun, rows: list[dict], extra: dict) -> str:
    return json.dumps({"path": run.spec.name, "profile": run.result.profile, "steps": rows,
                       "total_cycles": run.total, "guest_measured_avg_cycles": run.guest_avg,
                       "iterations": run.iterations, **extra}, indent=2)


def cmd_trap_path(a) -> int:
    run = paths.run_path(a.path, _load_profile(a.profile), _features(a))
    rows = paths.trap_path_rows(run)
    if a.format == "json":
        print(_path_json(run, rows, {}))
        return 0
    rows = rows + [{"step": "", "where": "", "what": "total", "cycles": run.total}]
    print(report.table(rows, a.format, title=f"Trap path: {a.path} ({run.spec.description}){_design_note(a)}, "
                                             f"profile {run.result.profile}"))
    if a.format in ("simple", "plain", "grid"):
        print(f"guest-measured (CNTVCT, {run.iterations} iterations): {run.guest_avg} cycles; table total: {run.total}")
    return 0


def cmd_world_switch(a) -> int:
    run = paths.run_path("hypercall", _load_profile(a.profile), _features(a))
    rows = paths.world_switch_rows(run.segment)
    if a.format == "json":
        print(json.dumps({"profile": run.result.profile, "rows": rows, "hypercall_total_cycles": run.total},
                         indent=2))
        return 0
    print(report.table(rows, a.format, title=f"World switch of one hypercall round trip{_design_note(a)}, "
                                             f"profile {run.result.profile}"))
    if a.format in ("simple", "plain", "grid"):
        ws = rows[-1]["save"] + rows[-1]["restore"]
        print(f"world switch {ws:,} of the hypercall's {run.total:,} cycles; the rest is host software "
              f"(`armvirt trap-path hypercall`)")
    return 0


def cmd_demo(a) -> int:
    prof = _load_profile(a.profile)
    if a.format == "json":
        run = paths.run_path("hypercall", prof)
        print(json.dumps({"console": run.result.console.lines, "exits": run.result.stats,
                          "world_switch": paths.world_switch_rows(run.segment),
                          "trap_path": paths.trap_path_rows(run), "total_cycles": run.total,
                          "guest_measured_avg_cycles": run.guest_avg}, indent=2))
        return run.result.status
    img = paths.image_path("hypercall.elf")
    print(f"$ armvirt run {os.path.relpath(img)}")
    m = Machine(MachineConfig(kernel=img, max_insns=500_000_000), prof)
    res = m.run()
    print(report.table(res.stats, a.format))
    print()
    ns = argparse.Namespace(profile=a.profile, format=a.format, gic="2", no_vgic=False, no_vtimer=False,
                            lrs="4", hyp_mode="nvhe", lazy=None, fp=None)
    cmd_world_switch(ns)
    print()
    ns.path = "hypercall"
    cmd_trap_path(ns)
    return res.status


def cmd_profiles(a) -> int:
    if a.show:
        p = _load_profile(a.show)
        rows = [{"cost": k, "cycles": v, "source": p.sources[k]} for k, v in p.costs.items()]
        if a.format != "json":
            print(f"{p.name}: {p.description}\n  cpu {p.cpu_hz / 1e9:g} GHz, counter {p.cntfrq_hz / 1e6:g} MHz, CPI {p.cpi}")
        print(report.table(rows, a.format))
        return 0
    rows = [{"profile": n, "description": profiles.load(n).description, "path": profiles.load(n).path}
            for n in profiles.available()]
    print(report.table(rows, a.format))
    return 0


def cmd_compare(a) -> int:
    try:
        designs = compare.parse_designs(a.designs)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if a.plot and os.path.splitext(a.plot)[1].lower() not in (".png", ".svg"):
        raise UsageError(f"--plot {a.plot!r}: the file name must end in .png or .svg")
    prof = _load_profile(a.profile)
    features = {**_gic_features(a), **_switching(a)}
    if a.breakdown:
        steps = compare.breakdown(a.breakdown, designs, prof, features)
        print(compare_report.format_breakdown(a.breakdown, steps, designs, a.format))
        return 0
    res = compare.run_compare(designs, prof, features)
    failed = {d: st for d, st in res.statuses.items() if st[0] != 0}
    meta = {"profile": prof.name, "designs": designs,
            "features": {k: v for k, v in features.items()}, "image": compare.IMAGE}
    title = (f"microbench (cycles, guest-measured with CNTVCT), profile {prof.name}, GICv{a.gic}"
             f"{', no vGIC' if a.no_vgic else ''}{', no vtimer' if a.no_vtimer else ''}"
             f"{'' if a.lazy is None else (', lazy switching' if a.lazy else ', eager switching')}"
             f"{'' if a.fp is None else f', {a.fp} FP/SIMD'}")
    print(compare_report.format_table(res.rows, designs, a.format, title=title, meta=meta))
    if a.plot:
        compare_report.plot(res.rows, res.world_switch, designs, a.plot, title=title)
        if a.format not in ("json", "csv"):
            print(f"plot written to {a.plot}")
    for d, (status, reason, message) in failed.items():
        print(f"armvirt: {d}: microbench failed ({reason}, status {status}) {message}", file=sys.stderr)
    return 1 if failed else 0


COMMANDS = {"compare": cmd_compare, "run": cmd_run, "trap-path": cmd_trap_path, "world-switch": cmd_world_switch,
            "demo": cmd_demo, "profiles": cmd_profiles}


def main(argv: list[str] | None = None) -> int:
    try:
        a = build_parser().parse_args(argv)
        return COMMANDS[a.cmd](a)
    except (UsageError, BadImage, BootError, ConfigError) as e:
        print(f"armvirt: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except paths.PathError as e:
        print(f"armvirt: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except SerialQuit:                     # Ctrl-A x on the terminal, as QEMU's mux
        print("armvirt: terminated (Ctrl-A x)", file=sys.stderr)
        return 0
    except BrokenPipeError:
        return 0
    except Exception as e:                 # an armvirt bug: one line, the traceback on request
        if os.environ.get("ARMVIRT_DEBUG"):
            raise
        print(f"armvirt: internal error: {type(e).__name__}: {e} (set ARMVIRT_DEBUG=1 for a traceback)",
              file=sys.stderr)
        return 70


if __name__ == "__main__":
    sys.exit(main())
