"""armvirt's command line: `run` and `stat` take qemu-system-aarch64's options with
QEMU's syntax and meaning (armvirt.qemu_args), the other commands armvirt's own."""
from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import shlex
import sys

from armvirt import compare, compare_report, kvm_stat, paths, profile as profiles, report
from armvirt.console import Console
from armvirt.boot import BootError
from armvirt.loader import BadImage
from armvirt.machine import ConfigError, Machine, MachineConfig, boot_plan, make_host, run_machines
from armvirt.serial import SerialQuit, stdin_input
from armvirt.trace_events import TraceWriter, tracing
from armvirt.qemu_args import (DEFAULT_GDB_PORT, HelpRequest, UsageError, parse_count, parse_cpu, parse_debug,
                               parse_block_devices, parse_drives, parse_gdb, parse_icount, parse_machine, parse_name, parse_serial,
                               parse_size, parse_smp, unknown_option)
from el2.design import Design
from engine.layout import VIRTIO_MMIO_MODELED as VIRTIO_TRANSPORTS
from engine.trace import CATEGORIES, HELP as LOG_HELP, Timeline, Tracer

EXIT_USAGE = 2
LOG_ITEMS = {c: LOG_HELP.get(c, "") for c in CATEGORIES}
_MISSING_ARG = re.compile(r"argument (-[^/:\s]+)[^:]*: expected one argument")


class _Parser(argparse.ArgumentParser):
    """No prefix abbreviations, as QEMU: `-s` is never read as `-smp`.  Errors are one
    line in QEMU's words ("-foo: invalid option", "-D: requires an argument")."""
    def __init__(self, *args, **kw):
        kw.setdefault("allow_abbrev", False)
        super().__init__(*args, **kw)

    def _get_option_tuples(self, option_string):
        # Python 3.11 still prefix-matches single-dash options with allow_abbrev=False.
        return []

    def parse_args(self, args=None, namespace=None):
        ns, extras = self.parse_known_args(args, namespace)
        if extras:
            opt = next((t for t in extras if t.startswith("-") and t != "-"), None)
            raise UsageError(unknown_option(opt) if opt else f"unexpected argument {extras[0]!r}")
        return ns

    def error(self, message):             # one line, exit code 2, like every other bad input
        m = _MISSING_ARG.fullmatch(message)
        raise UsageError(f"{m.group(1)}: requires an argument" if m else message)


def _opt(p: argparse.ArgumentParser, *names: str, **kw) -> None:
    """An option of `run`/`stat` under both spellings QEMU accepts: -name and --name."""
    spellings = []
    for n in names:
        bare = n.lstrip("-")
        spellings += [f"-{bare}", f"--{bare}"]
    p.add_argument(*spellings, **kw)


class _InOrder(argparse.Action):
    """-drive and -pflash into one list, in command-line order: (option, value)."""
    def __call__(self, parser, namespace, values, option_string=None):
        items = list(getattr(namespace, self.dest) or [])
        items.append(("-" + option_string.lstrip("-"), values))
        setattr(namespace, self.dest, items)


def _add_trace_out(p: argparse.ArgumentParser) -> None:
    _opt(p, "--trace-out", default=None, metavar="FILE.json[.gz]",
         help="write a trace of the run in modeled time (Trace Event Format: open it in ui.perfetto.dev)")


def _open_trace(a):
    """The --trace-out file, opened before the run (a bad path fails before it, as -D does)."""
    path = getattr(a, "trace_out", None)
    if not path:
        return None
    try:
        return gzip.open(path, "wt") if path.endswith(".gz") else open(path, "w")
    except OSError as e:
        raise UsageError(f"--trace-out {path}: cannot open: {e.strerror or e}") from None


def _write_trace(writer: TraceWriter, f) -> None:
    with f:
        writer.write(f)
    print(f"armvirt: trace written to {f.name} ({os.path.getsize(f.name):,} bytes)", file=sys.stderr)


def _add_common(p: argparse.ArgumentParser, formats=report.FORMATS) -> None:
    _opt(p, "--profile", default="xgene", help="cost profile name or TOML path (see `armvirt profiles`)")
    _opt(p, "--format", default="simple", choices=formats, help="table format")


def _add_gic_features(p: argparse.ArgumentParser) -> None:
    _opt(p, "--gic", default="2", choices=("2", "3"), help="GIC version")
    _opt(p, "--no-vgic", action="store_true", help="trap and emulate the CPU interface")
    _opt(p, "--no-vtimer", action="store_true", help="trap and emulate the virtual timer")
    _opt(p, "--lrs", default="4", help="number of list registers")


def _add_switching(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    _opt(g, "--eager-switch", dest="lazy", action="store_false", default=None,
                   help="switch every register group on every trap (no lazy/deferred switching)")
    _opt(g, "--lazy-switch", dest="lazy", action="store_true",
                   help="lazy FP, used LRs only, timer/VMCR deferred (default for vhe)")
    _opt(p, "--fp", default=None, choices=("lazy", "eager"),
                   help="FP/SIMD switching on its own (default: as the lazy/eager switching)")


def _add_design(p: argparse.ArgumentParser) -> None:
    _opt(p, "--hyp-mode", default="nvhe", choices=("nvhe", "kvm-split", "vhe", "type1"),
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


def _add_run_options(r: argparse.ArgumentParser) -> None:
    """`run`'s options (`stat` takes the same): QEMU's with QEMU's syntax, then armvirt's."""
    r.add_argument("image", nargs="?", help="guest image (same as -kernel); a bare name such as `hello` "
                                            "is a bundled image when no such file is here")
    _opt(r, "-kernel", dest="kernel", metavar="IMAGE")
    _opt(r, "-append", dest="append", default="", metavar="ARGS")
    _opt(r, "-initrd", dest="initrd", default=None, metavar="FILE",
         help="load FILE into RAM above the kernel (its range in /chosen linux,initrd-start/-end)")
    _opt(r, "-dtb", dest="dtb", default=None, metavar="FILE",
         help="the device tree to give the guest (bootargs, initrd, /memory and /psci patched in, as QEMU)")
    _opt(r, "-bios", dest="bios", default=None, metavar="FILE",
         help="firmware for flash bank 0 (a firmware boot: the DTB at RAM base, entered at 0x0)")
    _opt(r, "-drive", dest="drives", action=_InOrder, default=[],
         metavar="if=pflash|none,format=raw,file=F[,unit=N|id=ID][,readonly=on]",
         help="if=pflash: a 64 MiB image for flash bank N (unit 0: a firmware boot); if=none: a disk "
              "image for -device virtio-blk-device,drive=ID; writes go back to F")
    _opt(r, "-device", dest="devices", action="append", default=[], metavar="virtio-blk-device,drive=ID",
         help="a virtio-blk disk on the virtio-mmio transport at 0x0a000000 (-device help)")
    _opt(r, "-pflash", dest="drives", action=_InOrder, metavar="FILE", help="-drive if=pflash,format=raw,file=FILE")
    _opt(r, "-M", "-machine", dest="machine", action="append", default=[],
         metavar="virt[,gic-version=2|3|max][,dumpdtb=FILE]",
         help="machine type and properties, repeatable and merged as in QEMU (-M help, -M virt,help)")
    _opt(r, "-cpu", dest="cpu", default="cortex-a57", metavar="MODEL", help="CPU model (-cpu help)")
    _opt(r, "-smp", dest="smp", default="1", metavar="[cpus=]N[,cores=N,maxcpus=N]")
    _opt(r, "-m", dest="mem", default="128M", metavar="[size=]SIZE", help="guest RAM, e.g. 128M, 1.5G (default MiB)")
    _opt(r, "-name", dest="name", default=None, metavar="[guest=]NAME", help="the VM's name")
    _opt(r, "-d", dest="debug", default=None, metavar="ITEM[,...]", help="log items (-d help lists them)")
    _opt(r, "-D", dest="logfile", default=None, metavar="FILE", help="write the -d log to this file")
    _opt(r, "-serial", dest="serial", default=None, metavar="stdio|file:PATH|null",
         help="the PL011's back end: stdio (the default: output to stdout, input from stdin), "
              "file:PATH (output only) or null")
    _opt(r, "-gdb", dest="gdb", default=None, metavar="tcp::PORT|tcp:HOST:PORT", help="GDB stub")
    _opt(r, "-s", dest="gdb_default", action="store_true", help=f"shorthand for -gdb tcp::{DEFAULT_GDB_PORT}")
    _opt(r, "-S", dest="start_stopped", action="store_true", help="start with every vCPU stopped")
    _opt(r, "-icount", dest="icount", default=None, metavar="[shift=]N|auto",
         help="accepted: armvirt's time is always instruction-driven")
    _opt(r, "-nographic", action="store_true", help="accepted: armvirt has no display; the console is -serial")
    _opt(r, "-no-reboot", dest="no_reboot", action="store_true", help="exit instead of rebooting on PSCI SYSTEM_RESET")
    # armvirt's own
    _opt(r, "--max-insns", default=None, help="stop a runaway guest at the first block boundary after N instructions")
    _opt(r, "--lrs", default="4", help="number of list registers")
    _opt(r, "--quantum", default="20000", help="SMP: cycles of virtual time per pCPU turn")
    _opt(r, "--pcpus", default=None, help="physical CPUs of the host (default: the largest -smp)")
    _opt(r, "--vm", action="append", default=[],
         metavar="'IMAGE [-smp N] [-m SIZE] [-append ARGS] [-initrd F] [-dtb F] [-name NAME]'",
         help="another VM on the same host (repeatable); its vCPUs share the pCPUs")
    _opt(r, "--no-vgic", action="store_true", help="no virtual CPU interface: every GICC access traps")
    _opt(r, "--no-vtimer", action="store_true", help="the virtual timer traps and is emulated")
    _opt(r, "--no-thp", action="store_true",
         help="guest RAM without transparent huge pages: stage 2 maps 4 KiB pages, not 2 MiB blocks")
    _add_design(r)
    _opt(r, "--profile", default="xgene", help="cost profile name or TOML path (see `armvirt profiles`)")


def _add_exit_report(p: argparse.ArgumentParser) -> None:
    """perf kvm stat report's selection and order (and kvm_stat's -g for a guest)."""
    _opt(p, "--vcpu", default=None, metavar="N", help="exit statistics of vCPU N only (perf kvm stat --vcpu)")
    p.add_argument("--sort", "-sort", "--key", "-key", dest="sort", default="sample", choices=tuple(kvm_stat.SORT_KEYS),
                   help="order of the exit statistics: sample (number of samples) or time (average time)")
    _opt(p, "--guest", default=None, metavar="NAME", help="exit statistics of this VM only")


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="armvirt", description="ARMv8 virtualization platform: a KVM/ARM split-mode model "
                                             "on the Unicorn engine")
    sub = ap.add_subparsers(dest="cmd", required=True, parser_class=_Parser)
    r = sub.add_parser("run", help="boot a guest image (qemu-system-aarch64's options)")
    _add_run_options(r)
    _add_exit_report(r)
    _opt(r, "--quiet", action="store_true", help="no run summary")
    _opt(r, "--format", default="simple", choices=("simple", "github", "json", "plain", "grid"), help="table format")
    _add_trace_out(r)
    s = sub.add_parser("stat", help="run a guest and show its exits live, as kvm_stat does")
    _add_run_options(s)
    _add_exit_report(s)
    _opt(s, "--delay", default="3", metavar="SECONDS", help="seconds between screen updates on a terminal")
    w = sub.add_parser("world-switch", help="world-switch cost table, from a real hypercall")
    _add_common(w)
    _add_features(w)
    t = sub.add_parser("trap-path", help="the ordered steps of a trap path and their cycles")
    t.add_argument("path", choices=sorted(paths.PATHS))
    _add_common(t)
    _add_features(t)
    _add_trace_out(t)
    c = sub.add_parser("compare", help="the microbenchmark guest under each hypervisor design")
    _opt(c, "--designs", default="nvhe,vhe,type1", help="comma-separated: nvhe (kvm-split), vhe, type1")
    _opt(c, "--profile", default="xgene", help="cost profile name or TOML path (see `armvirt profiles`)")
    _opt(c, "--format", default="simple", choices=compare_report.FORMATS, help="table format")
    _opt(c, "--plot", default=None, metavar="FILE.png|FILE.svg",
         help="write a grouped bar chart of the table and the world-switch groups per design")
    _opt(c, "--breakdown", default=None, choices=compare_report.OPERATIONS,
         help="show the steps of this operation's path under each design")
    _add_gic_features(c)
    _add_switching(c)                     # for every design compared
    _add_trace_out(c)
    d = sub.add_parser("demo", help="boot the hypercall image, then show its tables")
    _add_common(d, ("simple", "github", "json"))
    p = sub.add_parser("profiles", help="list cost profiles and their sources")
    _opt(p, "--show", default=None, help="print every cost of one profile with its source")
    _opt(p, "--format", default="simple", choices=report.FORMATS)
    return ap


def _load_profile(name: str):
    try:
        return profiles.load(name)
    except profiles.ProfileError as e:
        raise UsageError(str(e)) from None


def _image(name: str) -> str:
    """A file here, else a bundled image by bare name (`hello` or `hello.elf`)."""
    path = paths.resolve_image(name)
    if not os.path.isfile(path) and os.path.basename(name) == name and not os.path.exists(name):
        raise BadImage(f"{name}: no such file, nor a bundled image ({', '.join(paths.bundled_images())})")
    return path


def _vm_spec(text: str, index: int) -> dict:
    """One --vm: an image and the per-VM options (the host-wide ones stay global)."""
    vp = _Parser(prog="--vm", add_help=False)
    vp.add_argument("image")
    _opt(vp, "-smp", default="1")
    _opt(vp, "-m", dest="mem", default="128M")
    _opt(vp, "-append", default="")
    _opt(vp, "-initrd", default=None)
    _opt(vp, "-dtb", default=None)
    _opt(vp, "-name", default=None)
    try:
        words = shlex.split(text)
    except ValueError as e:
        raise UsageError(f"--vm {text!r}: {e}") from None
    try:
        v = vp.parse_args(words)
    except UsageError as e:
        raise UsageError(f"--vm {text!r}: {e}") from None
    return {"kernel": _image(v.image), "smp": parse_smp(v.smp), "ram_size": parse_size(v.mem),
            "append": v.append, "initrd": v.initrd, "dtb": v.dtb,
            "name": parse_name(v.name) if v.name else f"vm{index}"}


def _host_options(a) -> dict:
    """The options that are the host's, not one VM's; `help` values answer first, as QEMU's do."""
    machine = parse_machine(a.machine or ["virt"])
    dumpdtb = machine.pop("dumpdtb", None)
    parse_cpu(a.cpu)
    cats = parse_debug(a.debug, LOG_ITEMS)
    notes = [parse_icount(a.icount)] if a.icount is not None else []
    if a.gdb and a.gdb_default:
        raise UsageError("-s is -gdb tcp::1234: give one of -s and -gdb")
    gdb = parse_gdb(a.gdb) if a.gdb else (("0.0.0.0", DEFAULT_GDB_PORT) if a.gdb_default else None)
    if a.start_stopped and gdb is None:
        raise UsageError("-S: armvirt has no monitor to start the vCPUs; give -s or -gdb tcp::PORT too")
    return {"machine": machine, "debug": cats, "gdb": gdb, "notes": notes, "dumpdtb": dumpdtb}


def _firmware(a) -> dict:
    """-bios and -drive if=pflash / -pflash: the flash banks' images; -drive if=none with
    -device virtio-blk-device: the disks behind the virtio-mmio transports (MachineConfig fields)."""
    return {"bios": a.bios, "pflash": parse_drives(a.drives),
            "blk": parse_block_devices(a.drives, a.devices, VIRTIO_TRANSPORTS)}


def _run_configs(a, host: dict) -> list[MachineConfig]:
    image = a.kernel or a.image
    if a.kernel and a.image:
        raise UsageError("run: give the image either as IMAGE or with -kernel, not both")
    fw = _firmware(a)
    booted = image or fw["bios"] is not None or fw["pflash"]
    if not booted and not a.vm:
        raise UsageError("run: no guest image (give IMAGE, -kernel IMAGE, -bios FILE or --vm 'IMAGE ...')")
    if not booted and (a.smp != "1" or a.mem != "128M" or a.append or a.name or a.serial or a.initrd or a.dtb):
        raise UsageError("run: -smp, -m, -append, -initrd, -dtb, -name and -serial describe IMAGE; "
                         "with only --vm, give them inside each --vm")
    specs = []
    if booted:
        specs.append({"kernel": _image(image) if image else None, "ram_size": parse_size(a.mem),
                      "smp": parse_smp(a.smp), "append": a.append, "initrd": a.initrd, "dtb": a.dtb, **fw,
                      "name": parse_name(a.name) if a.name else "vm0",
                      "serial": parse_serial(a.serial) if a.serial else "stdio"})
    specs += [_vm_spec(t, len(specs) + i) for i, t in enumerate(a.vm)]
    names = [sp["name"] for sp in specs]
    if len(set(names)) != len(names):
        raise UsageError(f"--vm: VM names must differ (got {', '.join(names)})")
    common = dict(**host["machine"], nr_lr=parse_count(a.lrs, "--lrs"),
                  no_reboot=a.no_reboot, vgic=not a.no_vgic, vtimer=not a.no_vtimer, thp=not a.no_thp,
                  quantum=parse_count(a.quantum, "--quantum"), **_design(a),
                  pcpus=parse_count(a.pcpus, "--pcpus") if a.pcpus else max(sp["smp"] for sp in specs),
                  max_insns=parse_count(a.max_insns, "--max-insns") if a.max_insns else None,
                  gdb=host["gdb"], start_stopped=a.start_stopped)
    return [MachineConfig(**sp, **common) for sp in specs]


def _report_choice(a, cfgs: list[MachineConfig]) -> tuple[int | None, str | None]:
    """--vcpu and --guest, checked against the machines."""
    vcpu = parse_count(a.vcpu, "--vcpu") if a.vcpu is not None else None
    if a.guest is not None and a.guest not in [c.name for c in cfgs]:
        raise UsageError(f"--guest {a.guest}: no such VM (VMs: {', '.join(c.name for c in cfgs)})")
    shown = [c for c in cfgs if a.guest in (None, c.name)]
    if vcpu is not None and vcpu >= max(c.smp for c in shown):
        raise UsageError(f"--vcpu {vcpu}: the VM has {max(c.smp for c in shown)} vCPU(s)")
    return vcpu, a.guest


def _exit_report(results, cfgs, prof, a, fmt: str, vcpu, guest) -> str:
    """perf kvm stat report: one VM is "all VMs"; several give one report per guest
    (or the one --guest names)."""
    sources = [kvm_stat.Source(c.name, r.vcpu_stats) for c, r in zip(cfgs, results)]
    if len(sources) == 1:
        return kvm_stat.format_report(sources, prof.cpu_hz, fmt, a.sort, vcpu)
    return "\n".join(kvm_stat.format_report([s], prof.cpu_hz, fmt, a.sort, vcpu, vm=s.vm)
                     for s in sources if guest in (None, s.vm))


def _result_json(res, cpu_hz: int, key: str, vcpu) -> dict:
    events = kvm_stat.gather([kvm_stat.Source("", res.vcpu_stats)], vcpu)
    return {"status": res.status, "reason": res.reason, "message": res.message,
            "console": res.console.lines, "guest_instructions": res.insns,
            "cycles": res.cycles, "profile": res.profile, "exits": kvm_stat.report_rows(events, cpu_hz, key),
            "exits_cycles": res.stats, "counters": res.counters, "guest_errors": res.guest_errors,
            "stage2_pages": res.extra["stage2_pages"], "stage2_blocks": res.extra["stage2_blocks"],
            "resets": res.resets,
            "first_el0": res.extra.get("first_el0")}


def _exits_per_vcpu(vcpu_stats) -> str:
    """Exit counts by reason (rows) and vCPU (columns), most frequent first."""
    totals: dict[str, int] = {}
    for st in vcpu_stats:
        for reason, stat in st.by_reason.items():
            totals[reason] = totals.get(reason, 0) + stat.count
    rows = [{"VM-EXIT": reason, **{f"vCPU{i}": (st.by_reason[reason].count if reason in st.by_reason else 0)
                                   for i, st in enumerate(vcpu_stats)}}
            for reason in sorted(totals, key=lambda r: (-totals[r], r))]
    return report.table(rows, "simple", title="exits per vCPU:")


def _print_summary(res, name: str | None) -> None:
    out = sys.stdout
    who = f"{name}: " if name else ""
    out.write(f"\n==== armvirt: {who}{res.reason}, exit status {res.status}, profile {res.profile}\n")
    out.write(f"guest instructions: {res.insns:,}   modeled cycles: {res.cycles:,}   "
              f"stage-2 pages: {res.extra['stage2_pages']:,} ({res.extra['stage2_blocks']:,} 2 MiB blocks)\n")
    first = res.extra.get("first_el0")
    if first is not None:
        out.write(f"first user-space instruction: vCPU{first['vcpu']} after {first['insns']:,} guest "
                  f"instructions (vCPU{first['vcpu']}: {first['vcpu_insns']:,}), at {first['cycles']:,} "
                  f"modeled cycles = {first['guest_seconds']:.3f} s of guest time\n")
    if len(res.vcpu_stats) > 1:
        out.write(_exits_per_vcpu(res.vcpu_stats) + "\n")
    for e in res.guest_errors[:10]:
        out.write(f"guest error: {e}\n")
    if len(res.guest_errors) > 10:
        out.write(f"guest error: ... {len(res.guest_errors) - 10} more\n")


def _open_log(path: str | None):
    if not path:
        return None
    try:
        return open(path, "w")
    except OSError as e:
        raise UsageError(f"-D {path}: cannot open: {e.strerror or e}") from None


def _boot(a, echo: bool, read_stdin: bool = True):
    """Parse `run`'s options and build the host and its machines (`read_stdin`: the
    -serial stdio PL011 takes its input from stdin)."""
    host = _host_options(a)
    cfgs = _run_configs(a, host)
    vcpu, guest = _report_choice(a, cfgs)
    prof = _load_profile(a.profile)
    log = _open_log(a.logfile)
    for note in host["notes"]:                 # once the command line is known to be good
        print(f"armvirt: {note}", file=sys.stderr)
    many = len(cfgs) > 1
    trace = Tracer(host["debug"], log, Timeline() if getattr(a, "trace_out", None) else None)
    serial = _Serial(read_stdin)
    try:
        h = make_host(cfgs[0], prof, trace)
        machines = []
        for c in cfgs:
            console, rx = serial.open(c, echo, f"[{c.name}] " if many else "")
            machines.append(Machine(c, prof, console=console, trace=trace, host=h, serial_input=rx))
    except BaseException:
        serial.close()
        if log:
            log.close()
        raise
    return cfgs, machines, prof, _Closing(log, serial), (vcpu, guest)


class _Serial:
    """The -serial back ends of the run's PL011s (armvirt.serial): a VM with -serial stdio
    (the first such VM: there is one stdin) reads the terminal or pipe; file:PATH and
    null read nothing.  close() restores a terminal and closes files, on every way out."""

    def __init__(self, read_stdin: bool = True):
        self.input, self.files, self.read_stdin = None, [], read_stdin

    def open(self, cfg: MachineConfig, echo: bool, prefix: str):
        kind, _, path = cfg.serial.partition(":")
        if kind == "null":
            return Console(echo=False), None
        if kind == "file":
            try:
                f = open(path, "w", encoding="latin-1", newline="")
            except OSError as e:
                raise UsageError(f"-serial file:{path}: cannot open: {e.strerror or e}") from None
            self.files.append(f)
            return Console(out=f), None
        rx = None
        if self.input is None and self.read_stdin:
            rx = self.input = stdin_input(before_wait=sys.stdout.flush)
        return Console(echo=echo, prefix=prefix), rx

    def close(self) -> None:
        if self.input is not None:
            self.input.restore()
        for f in self.files:
            f.close()


class _Closing:
    """What a run leaves open: the -D log and the serial back ends."""

    def __init__(self, log, serial: _Serial):
        self.log, self.serial = log, serial

    def close(self) -> None:
        self.serial.close()
        if self.log:
            self.log.close()


def _stopped_messages(cfgs, results) -> int:
    many = len(cfgs) > 1
    for c, res in zip(cfgs, results):
        if res.message:
            print(f"armvirt: {c.name + ': ' if many else ''}{res.message}", file=sys.stderr)
    return max(res.status for res in results)


def cmd_dumpdtb(a, path: str) -> int:
    """-M virt,dumpdtb=FILE: the DTB the guest would get (with a kernel, its /chosen
    bootargs and initrd too) written to FILE, then exit 0, as QEMU does."""
    if a.vm:
        raise UsageError("-M virt,dumpdtb=FILE: dumps the DTB of IMAGE, not of --vm guests")
    image = a.kernel or a.image
    if not image and (a.append or a.initrd):
        raise UsageError("-append and -initrd are only allowed with a kernel image (-kernel)")
    machine = parse_machine(a.machine or ["virt"])
    machine.pop("dumpdtb", None)
    cfg = MachineConfig(kernel=_image(image) if image else None, ram_size=parse_size(a.mem), smp=parse_smp(a.smp),
                        append=a.append, initrd=a.initrd, dtb=a.dtb, **_firmware(a), **machine)
    blob = boot_plan(cfg, _load_profile(a.profile)).dtb
    try:
        with open(path, "wb") as f:
            f.write(blob)
    except OSError as e:
        raise UsageError(f"-M virt,dumpdtb={path}: cannot write: {e.strerror or e}") from None
    print(f"armvirt: info: dtb dumped to {path}. Exiting.", file=sys.stderr)
    return 0


def cmd_run(a) -> int:
    dump = _host_options(a)["dumpdtb"]
    if dump:
        return cmd_dumpdtb(a, dump)
    as_json = a.format == "json"
    cfgs, machines, prof, opened, (vcpu, guest) = _boot(a, echo=not as_json)
    try:
        trace_file = _open_trace(a)
        results = run_machines(machines)
    finally:
        opened.close()
    if trace_file:
        writer = TraceWriter()
        writer.add(machines[0].trace.timeline, prof.cpu_hz)
        _write_trace(writer, trace_file)
    many = len(cfgs) > 1
    if as_json:
        docs = [{"name": c.name, **_result_json(r, prof.cpu_hz, a.sort, vcpu)} for c, r in zip(cfgs, results)
                if guest in (None, c.name)]
        print(json.dumps(docs[0] if not many else {"vms": docs}, indent=2))
    elif not a.quiet:
        for c, res in zip(cfgs, results):
            _print_summary(res, c.name if many else None)
        print(_exit_report(results, cfgs, prof, a, a.format, vcpu, guest))
    return _stopped_messages(cfgs, results)


def cmd_stat(a) -> int:
    """kvm_stat for an armvirt run: live on a terminal, the final frame otherwise, then
    perf kvm stat's report.  The guest's console is not shown (the screen is the stats)."""
    try:
        delay = float(a.delay)
    except ValueError:
        raise UsageError(f"--delay {a.delay!r}: expected seconds, e.g. 1.5") from None
    if not 0.1 <= delay <= 25.5:                    # kvm_stat's bounds
        raise UsageError(f"--delay {a.delay}: must be between 0.1 and 25.5 seconds")
    cfgs, machines, prof, opened, (vcpu, guest) = _boot(a, echo=False, read_stdin=False)
    shown = [(c, m) for c, m in zip(cfgs, machines) if guest in (None, c.name)]
    sources = [kvm_stat.Source(c.name, [v.stats for v in m.vcpus]) for c, m in shown]
    cpus = {id(v.cpu): v.cpu for _, m in shown for v in m.vcpus}.values()
    view = kvm_stat.LiveView(sources, lambda: max(c.cycles for c in cpus), prof.cpu_hz, sys.stdout,
                             delay=delay, vm=guest, live=sys.stdout.isatty())
    try:
        results = run_machines(machines)
    finally:
        view.close()
        opened.close()
    if view.live:
        sys.stdout.write("\x1b[H\x1b[2J")
    print(view.frame())
    print(_exit_report(results, cfgs, prof, a, "simple", vcpu, guest))
    return _stopped_messages(cfgs, results)


def _path_json(run: paths.PathRun, rows: list[dict], extra: dict) -> str:
    return json.dumps({"path": run.spec.name, "definition": run.spec.description,
                       "profile": run.result.profile, "steps": rows,
                       "total_cycles": run.total, "guest_measured_avg_cycles": run.guest_avg,
                       "iterations": run.iterations, **extra}, indent=2)


def cmd_trap_path(a) -> int:
    prof = _load_profile(a.profile)
    trace_file = _open_trace(a)
    writer = TraceWriter() if trace_file else None
    with tracing(writer, prof.cpu_hz, a.path) as trace:
        run = paths.run_path(a.path, prof, _features(a), trace)
    if writer is not None:
        _write_trace(writer, trace_file)
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
        exits = kvm_stat.gather([kvm_stat.Source("", run.result.vcpu_stats)])
        print(json.dumps({"console": run.result.console.lines,
                          "exits": kvm_stat.report_rows(exits, prof.cpu_hz),
                          "world_switch": paths.world_switch_rows(run.segment),
                          "trap_path": paths.trap_path_rows(run), "total_cycles": run.total,
                          "guest_measured_avg_cycles": run.guest_avg}, indent=2))
        return run.result.status
    print("$ armvirt run hypercall")
    m = Machine(MachineConfig(kernel=paths.image_path("hypercall.elf"), max_insns=500_000_000), prof)
    res = m.run()
    print(kvm_stat.format_report([kvm_stat.Source(m.cfg.name, res.vcpu_stats)], prof.cpu_hz, a.format))
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
    trace_file = _open_trace(a)
    writer = TraceWriter() if trace_file else None
    if a.breakdown:
        steps = compare.breakdown(a.breakdown, designs, prof, features, writer)
        print(compare_report.format_breakdown(a.breakdown, steps, designs, a.format,
                                              definition=compare.definitions()[a.breakdown]))
        if writer is not None:
            _write_trace(writer, trace_file)
        return 0
    res = compare.run_compare(designs, prof, features, writer)
    if writer is not None:
        _write_trace(writer, trace_file)
    failed = {d: st for d, st in res.statuses.items() if st[0] != 0}
    meta = {"profile": prof.name, "designs": designs,
            "features": {k: v for k, v in features.items()}, "image": compare.IMAGE}
    title = (f"microbench (cycles, guest-measured with CNTVCT), profile {prof.name}, GICv{a.gic}"
             f"{', no vGIC' if a.no_vgic else ''}{', no vtimer' if a.no_vtimer else ''}"
             f"{'' if a.lazy is None else (', lazy switching' if a.lazy else ', eager switching')}"
             f"{'' if a.fp is None else f', {a.fp} FP/SIMD'}")
    print(compare_report.format_table(res.rows, designs, a.format, title=title, meta=meta,
                                      definitions=compare.definitions()))
    if a.plot:
        compare_report.plot(res.rows, res.world_switch, designs, a.plot, title=title)
        if a.format not in ("json", "csv"):
            print(f"plot written to {a.plot}")
    for d, (status, reason, message) in failed.items():
        print(f"armvirt: {d}: microbench failed ({reason}, status {status}) {message}", file=sys.stderr)
    return 1 if failed else 0


COMMANDS = {"compare": cmd_compare, "run": cmd_run, "stat": cmd_stat, "trap-path": cmd_trap_path, "world-switch": cmd_world_switch,
            "demo": cmd_demo, "profiles": cmd_profiles}


def main(argv: list[str] | None = None) -> int:
    try:
        a = build_parser().parse_args(argv)
        return COMMANDS[a.cmd](a)
    except HelpRequest as h:
        print(h)
        return 0
    except (UsageError, BadImage, BootError, ConfigError) as e:
        print(f"armvirt: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except paths.PathError as e:
        print(f"armvirt: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except SerialQuit:                     # Ctrl-A x on the terminal, as QEMU's stdio mux
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
