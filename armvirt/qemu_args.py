"""Values of `run`'s options in qemu-system-aarch64's syntax (QEMU 7.2 as reference:
qemu-options.hx, util/cutils.c qemu_strtosz, hw/core/machine-smp.c, hw/arm/virt.c).

Each parser takes the option's text and returns what armvirt's machine config
needs, or raises UsageError with one line naming the option.  `help` as a value
raises HelpRequest with the text QEMU would print on stdout (exit 0)."""
from __future__ import annotations

import os
import re
from fractions import Fraction


class UsageError(Exception):
    """Bad command line: one line on stderr, exit code 2."""


class HelpRequest(Exception):
    """`-d help`, `-M help`, `-cpu help`...: print the text on stdout and exit 0."""


def is_help(text: str | None) -> bool:
    return text in ("help", "?")


def _keyvals(option: str, text: str, implied: str | None) -> dict[str, str]:
    """QemuOpts syntax: comma-separated key=value, the first bare value naming `implied`."""
    out: dict[str, str] = {}
    for i, item in enumerate(p for p in text.split(",") if p != ""):
        key, eq, val = item.partition("=")
        if not eq:
            if i == 0 and implied:
                key, val = implied, item
            else:
                val = "on"          # QEMU: a bare `flag` means flag=on
        if key in out:
            raise UsageError(f"{option} {text}: {key} given twice")
        out[key] = val
    return out


def _bool(option: str, key: str, val: str) -> bool:
    """QEMU's boolean property values (qapi/qobject-input-visitor: on/off, yes/no, true/false)."""
    v = val.lower()
    if v in ("on", "yes", "true", "y"):
        return True
    if v in ("off", "no", "false", "n"):
        return False
    raise UsageError(f"{option}: {key}={val}: expected on or off")


# --- -m ----------------------------------------------------------------------------
_SIZE_RE = re.compile(r"\s*(0[xX][0-9a-fA-F]+|\d+(?:\.\d*)?|\.\d+)\s*([bBkKmMgGtTpPeE]?)\s*")
_SUFFIX = {"b": 0, "k": 10, "m": 20, "g": 30, "t": 40, "p": 50, "e": 60}


def parse_size_value(option: str, text: str, default_suffix: str = "m") -> int:
    """qemu_strtosz: a decimal (fractions allowed) or hex number with an optional
    B/K/M/G/T/P/E suffix (powers of 1024); no suffix means MiB for -m."""
    m = _SIZE_RE.fullmatch(text or "")
    if not m:
        raise UsageError(f"{option} {text}: expected a size such as 128M or 1.5G "
                         f"(suffix B, K, M, G, T, P or E; no suffix means MiB)")
    num = Fraction(int(m.group(1), 16)) if m.group(1)[:2].lower() == "0x" else Fraction(m.group(1))
    n = num * (1 << _SUFFIX[(m.group(2) or default_suffix).lower()])
    if n.denominator != 1:
        raise UsageError(f"{option} {text}: not a whole number of bytes")
    return int(n)


def parse_size(text: str) -> int:
    """-m [size=]SIZE[,slots=N,maxmem=SIZE]: the guest's RAM in bytes."""
    opts = _keyvals("-m", text or "", "size")
    for key in opts:
        if key in ("slots", "maxmem"):
            raise UsageError(f"-m {text}: {key}: armvirt's virt board has no memory hotplug "
                             f"(give only the RAM size)")
        if key != "size":
            raise UsageError(f"-m {text}: Invalid parameter '{key}'")
    if "size" not in opts:
        raise UsageError(f"-m {text!r}: expected a size such as 128M or 1G")
    n = parse_size_value("-m", opts["size"])
    if n == 0:
        raise UsageError(f"-m {text}: RAM size must be positive")
    return n


# --- -smp --------------------------------------------------------------------------
_SMP_KEYS = ("cpus", "maxcpus", "sockets", "dies", "clusters", "cores", "threads")


def parse_smp(text: str) -> int:
    """-smp [cpus=]N[,maxcpus=N][,sockets=S][,clusters=C][,cores=K][,threads=T] as
    machine_parse_smp_config computes it for virt (cores preferred over sockets).
    armvirt's board is QEMU 7.2's default topology (its DTB's cpu-map: one socket, one
    cluster, N cores; MPIDR.Aff0 is the CPU index), so only one socket of one cluster,
    one thread per core, and no hotpluggable CPUs map onto it: anything else is
    refused rather than ignored."""
    opts = _keyvals("-smp", text or "", "cpus")
    vals: dict[str, int] = {}
    for key, val in opts.items():
        if key not in _SMP_KEYS:
            raise UsageError(f"-smp {text}: Parameter 'smp.{key}' is unexpected")
        if key == "dies":
            raise UsageError(f"-smp {text}: dies not supported by this machine's CPU topology")
        if not re.fullmatch(r"\d+", val):
            raise UsageError(f"-smp {text}: Parameter 'smp.{key}' expects integer")
        vals[key] = int(val)
    for key, v in vals.items():
        if v == 0:
            raise UsageError(f"-smp {text}: CPU topology parameters must be greater than zero ({key}=0)")
    sockets, clusters, threads = vals.get("sockets", 1), vals.get("clusters", 1), vals.get("threads", 1)
    per_core = sockets * clusters * threads
    maxcpus = vals.get("maxcpus") or vals.get("cpus")
    cores = vals.get("cores") or (maxcpus // per_core if maxcpus else 1)
    maxcpus = maxcpus or sockets * clusters * cores * threads
    cpus = vals.get("cpus") or maxcpus
    if sockets * clusters * cores * threads != maxcpus:
        raise UsageError(f"-smp {text}: Invalid CPU topology: product of the hierarchy must match maxcpus: "
                         f"sockets ({sockets}) * clusters ({clusters}) * cores ({cores}) * threads ({threads}) "
                         f"!= maxcpus ({maxcpus})")
    if maxcpus < cpus:
        raise UsageError(f"-smp {text}: Invalid CPU topology: maxcpus ({maxcpus}) must be equal to or "
                         f"greater than smp ({cpus})")
    if maxcpus != cpus:
        raise UsageError(f"-smp {text}: maxcpus={maxcpus}: armvirt has no CPU hotplug (maxcpus must equal cpus)")
    for key, v in (("sockets", sockets), ("clusters", clusters), ("threads", threads)):
        if v != 1:
            raise UsageError(f"-smp {text}: {key}={v}: armvirt's virt board is one socket of one cluster, "
                             f"one thread per core (give cpus or cores)")
    return cpus


# --- -cpu --------------------------------------------------------------------------
CPU_MODELS = {
    "cortex-a57": "ARM Cortex-A57 (the core armvirt models; default)",
    "host": "the modeled host's core (a Cortex-A57 class core)",
    "max": "every feature armvirt models (a Cortex-A57 class core)",
}


def parse_cpu(text: str) -> str:
    """-cpu MODEL[,prop=value]: armvirt models one Cortex-A57 class core, no properties."""
    model, _, props = (text or "").partition(",")
    if is_help(model):
        raise HelpRequest("Available CPUs:\n" + "\n".join(f"  {m:<12} {d}" for m, d in CPU_MODELS.items()))
    if model not in CPU_MODELS:
        raise UsageError(f"-cpu {model}: unable to find CPU model '{model}' (-cpu help lists them)")
    if props:
        key = props.split(",")[0].partition("=")[0]
        raise UsageError(f"-cpu {text}: property '{key}' not found (armvirt's CPU models have no properties)")
    return model


# --- -M / -machine -----------------------------------------------------------------
def _gic_version(text: str, key: str, val: str) -> dict:
    # hw/arm/virt.c virt_set_gic_version: 2, 3, host, max.  armvirt's "max" is GICv3.
    if val in ("2", "3"):
        return {"gic_version": int(val)}
    if val == "max":
        return {"gic_version": 3}
    if val == "host":
        raise UsageError(f"-M {text}: gic-version=host needs KVM on a real host (give 2, 3 or max)")
    raise UsageError(f"-M {text}: Invalid gic-version value {val!r}: valid values are 3, 2, max")


def _only_off(what: str):
    def prop(text: str, key: str, val: str) -> dict:
        if _bool("-M " + text, key, val):
            raise UsageError(f"-M {text}: {key}=on: {what}")
        return {}
    return prop


def _dumpdtb(text: str, key: str, val: str) -> dict:
    # QEMU's machine property: write the DTB the guest would get to FILE and exit 0.
    if not val or val == "on":
        raise UsageError(f"-M {text}: dumpdtb=FILE: a file name is required")
    return {"dumpdtb": val}


# Machine properties: name -> (help, parser(option text, key, value) -> MachineConfig fields).
MACHINE_PROPS = {
    "gic-version": ("Set GIC version. Valid values are 2, 3 and max", _gic_version),
    "virtualization": ("Set on/off to enable/disable emulating a guest CPU which implements the "
                       "ARM Virtualization Extensions (armvirt: off only)",
                       _only_off("a guest at EL2 (nested virtualization) is not modeled: the guest runs at EL1")),
    "secure": ("Set on/off to enable/disable the ARM Security Extensions (TrustZone) (armvirt: off only)",
               _only_off("the board has no EL3 and no secure world")),
    "mte": ("Set on/off to enable/disable emulating a guest CPU which implements the ARM "
            "Memory Tagging Extension (armvirt: off only)", _only_off("MTE is not modeled")),
    "dumpdtb": ("Dump current dtb to a file and quit", _dumpdtb),
}

MACHINE_TYPES = {"virt": "armvirt's model of QEMU's ARM Virtual Machine (virt-7.2)"}


def parse_machine(texts: str | list[str]) -> dict:
    """-M [type=]virt[,prop=value...], possibly repeated (QEMU merges -machine options:
    `-M virt,gic-version=3 -machine dumpdtb=q.dtb`): the MachineConfig fields set
    (and `dumpdtb`)."""
    if isinstance(texts, str):
        texts = [texts]
    cfg: dict = {}
    name = None
    for text in texts:
        opts = _keyvals("-M", text or "", "type")
        opts.setdefault("type", name or "virt")     # `-machine prop=value`: the machine so far
        n, one = _parse_machine_one(text, opts)
        if name is not None and n != name:
            raise UsageError(f"-M {text}: the machine is already {name}")
        name = n
        cfg.update(one)
    return cfg


def _parse_machine_one(text: str, opts: dict) -> tuple[str, dict]:
    name = opts.pop("type", None)
    if is_help(name):
        raise HelpRequest("Supported machines are:\n" +
                          "\n".join(f"{n:<20} {d}" for n, d in MACHINE_TYPES.items()))
    if name not in MACHINE_TYPES:
        raise UsageError(f"-M {name}: unsupported machine type (armvirt emulates 'virt'; "
                         f"-machine help lists it)")
    if "help" in opts:
        raise HelpRequest(f"{name}-machine options:\n" +
                          "\n".join(f"  {k}=<value>{' ' * max(1, 16 - len(k))}- {h}"
                                    for k, (h, _) in MACHINE_PROPS.items()))
    cfg: dict = {}
    for key, val in opts.items():
        prop = MACHINE_PROPS.get(key)
        if prop is None:
            raise UsageError(f"-M {text}: Property '{name}.{key}' not found (-M {name},help lists them)")
        cfg.update(prop[1](text, key, val))
    return name, cfg


# --- -d ----------------------------------------------------------------------------
def parse_debug(text: str | None, items: dict[str, str]) -> set[str]:
    """-d item[,item...]; `-d help` lists the items as QEMU does."""
    if not text:
        return set()
    if is_help(text):
        raise HelpRequest("Log items (comma separated):\n" +
                          "\n".join(f"{k:<15} {v}" for k, v in items.items()))
    cats = [c for c in text.split(",") if c]
    bad = [c for c in cats if c not in items]
    if bad:
        raise UsageError(f"-d {','.join(bad)}: unknown log item (-d help lists them: {', '.join(items)})")
    return set(cats)


# --- -icount -----------------------------------------------------------------------
ICOUNT_NOTE = ("-icount: accepted; armvirt's time is always instruction-driven (cycles = guest "
               "instructions x CPI + modeled costs), so it changes nothing")


def parse_icount(text: str) -> str:
    """-icount [shift=]N|auto[,align=on|off][,sleep=on|off][,rr=...]: validated like QEMU,
    then a note; armvirt's clock already is what -icount makes QEMU's."""
    opts = _keyvals("-icount", text or "", "shift")
    for key, val in opts.items():
        if key == "shift":
            if val != "auto" and not re.fullmatch(r"\d+", val):
                raise UsageError(f"-icount {text}: shift={val}: expected a number or auto")
        elif key in ("align", "sleep"):
            _bool(f"-icount {text}", key, val)
        elif key in ("rr", "rrfile", "rrsnapshot"):
            raise UsageError(f"-icount {text}: record/replay is not offered: an armvirt run is "
                             f"deterministic, the same input replays it bit for bit")
        else:
            raise UsageError(f"-icount {text}: Invalid parameter '{key}'")
    return ICOUNT_NOTE


# --- -serial, -gdb, -name ----------------------------------------------------------
def parse_serial(text: str) -> str:
    """-serial stdio|file:PATH|null: the PL011's back end, normalised."""
    if text in ("stdio", "null"):
        return text
    if text.startswith("file:"):
        if not text[5:]:
            raise UsageError(f"-serial {text}: file: needs a path (file:PATH)")
        return text
    if text in ("mon:stdio", "none") or text.split(":")[0] in ("pty", "tcp", "udp", "telnet", "unix", "vc",
                                                                 "chardev", "pipe", "mon", "websocket"):
        raise UsageError(f"-serial {text}: character back end not offered by armvirt "
                         f"(stdio, file:PATH or null)")
    raise UsageError(f"-serial {text}: '{text}' is not a valid char driver (stdio, file:PATH or null)")


DEFAULT_GDB_PORT = 1234


def parse_gdb(text: str) -> tuple[str, int]:
    """-gdb tcp::PORT | tcp:HOST:PORT (QEMU adds server,nowait itself): (host, port)."""
    m = re.fullmatch(r"tcp:([^:,]*):(\d+)((?:,(?:server|nowait|server=on|wait=off))*)", text or "")
    if not m:
        raise UsageError(f"-gdb {text}: expected tcp::PORT or tcp:HOST:PORT")
    port = int(m.group(2))
    if not 1 <= port <= 65535:
        raise UsageError(f"-gdb {text}: port {port} is not between 1 and 65535")
    return (m.group(1) or "0.0.0.0", port)


def parse_name(text: str) -> str:
    """-name [guest=]NAME[,debug-threads=on|off]: the VM's name (console prefix, reports)."""
    opts = _keyvals("-name", text or "", "guest")
    for key, val in opts.items():
        if key == "debug-threads":
            _bool(f"-name {text}", key, val)
        elif key != "guest":
            raise UsageError(f"-name {text}: Invalid parameter '{key}'")
    name = opts.get("guest", "")
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise UsageError(f"-name {text}: a VM name is letters, digits, '_', '.' and '-'")
    return name


def parse_count(text: str, what: str) -> int:
    m = re.fullmatch(r"\s*(\d+)\s*", text or "")
    if not m:
        raise UsageError(f"{what} {text!r}: expected a positive integer")
    return int(m.group(1))


# --- -drive, -pflash, -device ------------------------------------------------------
# -drive keys armvirt reads; the others QEMU has are refused by name (cache=, aio=, ...).
_DRIVE_KEYS = ("if", "file", "format", "unit", "index", "bus", "readonly", "id", "media")
_BLOCK_DEVICE_FORM = "-drive if=none,id=ID,file=F,format=raw -device virtio-blk-device,drive=ID"


class BlockDrive:
    """-drive if=none,id=ID,file=F,format=raw[,readonly=on]: a block backend a -device uses."""
    __slots__ = ("id", "file", "readonly", "text")

    def __init__(self, id: str, file: str, readonly: bool, text: str):
        self.id, self.file, self.readonly, self.text = id, file, readonly, text

    def __eq__(self, other):
        return isinstance(other, BlockDrive) and (self.id, self.file, self.readonly) == \
            (other.id, other.file, other.readonly)

    def __repr__(self):
        return f"BlockDrive({self.id!r}, {self.file!r}, readonly={self.readonly})"


def parse_drive(text: str, used_units: set[int]):
    """-drive if=pflash,format=raw,file=F[,unit=N|index=N][,bus=0][,readonly=on|off][,id=ID]:
    a flash bank's image (armvirt.flash.PflashDrive).  Without unit/index it takes the
    first free unit, as QEMU's drive_new.  -drive if=none,id=ID,file=F,format=raw
    [,readonly=on]: a BlockDrive for -device virtio-blk-device,drive=ID.  Every other
    interface is one line naming it."""
    from armvirt.flash import BANKS, PflashDrive
    opts = _keyvals("-drive", text or "", None)
    where = f"-drive {text}"
    iface = opts.get("if", "virtio")             # QEMU virt's default block interface
    if iface == "virtio":
        raise UsageError(f"{where}: if=virtio is not supported by armvirt: on QEMU virt it is a virtio-blk "
                         f"PCI device, and armvirt has no PCI (give {_BLOCK_DEVICE_FORM})")
    if iface not in ("pflash", "none"):
        raise UsageError(f"{where}: if={iface} is not supported by armvirt (if=pflash for the flash banks, "
                         f"or {_BLOCK_DEVICE_FORM})")
    for key in opts:
        if key not in _DRIVE_KEYS:
            raise UsageError(f"{where}: drive option '{key}' is not supported by armvirt "
                             f"(if, file, format=raw, unit, index, bus=0, readonly, id)")
    if not opts.get("file") or opts["file"] == "on":
        raise UsageError(f"{where}: file=FILE is required (armvirt has no empty drive)")
    fmt = opts.get("format", "raw")
    if fmt != "raw":
        raise UsageError(f"{where}: format={fmt} is not supported by armvirt (format=raw only)")
    if opts.get("media", "disk") != "disk":
        raise UsageError(f"{where}: media={opts['media']} is not supported for if={iface}")
    readonly = _bool(where, "readonly", opts["readonly"]) if "readonly" in opts else False
    if iface == "none":
        for key in ("unit", "index", "bus"):
            if key in opts:
                raise UsageError(f"{where}: {key}= has no meaning for if=none (a -device names the drive by id)")
        if not opts.get("id") or opts["id"] == "on":
            raise UsageError(f"{where}: id=ID is required for if=none (-device virtio-blk-device,drive=ID uses it)")
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_.-]*", opts["id"]):
            raise UsageError(f"{where}: Parameter 'id' expects an identifier (a letter, then letters, "
                             f"digits, '-', '.', '_')")
        return BlockDrive(opts["id"], opts["file"], readonly, where)
    if opts.get("bus", "0") != "0":
        raise UsageError(f"{where}: machine type does not support if=pflash,bus={opts['bus']}")
    if "unit" in opts and "index" in opts:
        raise UsageError(f"{where}: index cannot be used with bus and unit")
    text_unit = opts.get("unit", opts.get("index"))
    if text_unit is None:
        unit = next((u for u in range(BANKS) if u not in used_units), BANKS)
    elif re.fullmatch(r"\d+", text_unit):
        unit = int(text_unit)
    else:
        raise UsageError(f"{where}: invalid unit/index '{text_unit}' (a number)")
    return PflashDrive(opts["file"], unit, readonly)


def _all_drives(items: list[tuple[str, str]]) -> list:
    drives, used = [], set()
    for kind, text in items:
        d = parse_drive(f"if=pflash,format=raw,file={text}" if kind == "-pflash" else text, used)
        if isinstance(d, BlockDrive):
            if any(isinstance(o, BlockDrive) and o.id == d.id for o in drives):
                raise UsageError(f"{d.text}: Duplicate ID '{d.id}' for drive")
        else:
            used.add(d.unit)
        drives.append(d)
    return drives


def parse_drives(items: list[tuple[str, str]]) -> tuple:
    """The flash drives of the -drive and -pflash options in command-line order (units
    are handed out in it); the if=none drives are parse_block_devices'."""
    return tuple(d for d in _all_drives(items) if not isinstance(d, BlockDrive))


DEVICES = {"virtio-blk-device": "virtio-blk on a virtio-mmio transport (bus virtio-bus), drive=ID"}


def parse_block_devices(items: list[tuple[str, str]], devices: list[str], transports: int) -> tuple:
    """-device virtio-blk-device,drive=ID against the if=none drives: the BlockDrive of each
    device, in command-line order (transport 0 first).  Checked as QEMU checks them: an
    unknown drive id, a drive two devices use, more devices than virtio-mmio transports."""
    drives = {d.id: d for d in _all_drives(items) if isinstance(d, BlockDrive)}
    out, users = [], {}
    for text in devices:
        where = f"-device {text}"
        name, _, rest = (text or "").partition(",")
        if is_help(name):
            raise HelpRequest("Storage devices:\n" +
                              "\n".join(f'name "{n}", {d}' for n, d in DEVICES.items()))
        if name in ("virtio-blk-pci", "virtio-blk"):
            raise UsageError(f"{where}: '{name}' is a PCI device and armvirt has no PCI "
                             f"(give {_BLOCK_DEVICE_FORM})")
        if name not in DEVICES:
            raise UsageError(f"{where}: '{name}' is not a valid device model name for armvirt "
                             f"(-device help lists: {', '.join(DEVICES)})")
        opts = _keyvals("-device", rest, None)
        for key in opts:
            if key not in ("drive", "id"):
                raise UsageError(f"{where}: Property '{name}.{key}' not found (armvirt: drive, id)")
        if not opts.get("drive") or opts["drive"] == "on":
            raise UsageError(f"{where}: drive property not set (drive=ID of a -drive if=none,id=ID)")
        did = opts["drive"]
        if did not in drives:
            raise UsageError(f"{where}: Property '{name}.drive' can't find value '{did}' "
                             f"(no -drive if=none,id={did})")
        if did in users:
            raise UsageError(f"{where}: Property '{name}.drive' can't take value '{did}', it's in use "
                             f"(by -device {users[did]})")
        users[did] = text
        if len(out) >= transports:
            raise UsageError(f"{where}: no free virtio-mmio transport: armvirt has {transports} "
                             f"(0x0a000000), used by -device {devices[0]}")
        d = drives[did]
        _check_block_file(d)
        out.append(d)
    return tuple(out)


def _check_block_file(d: BlockDrive) -> None:
    """The image must open as QEMU's raw driver opens it (read-write unless readonly=on)."""
    if not os.path.exists(d.file):
        raise UsageError(f"{d.text}: Could not open '{d.file}': No such file or directory")
    if os.path.isdir(d.file):
        raise UsageError(f"{d.text}: Could not open '{d.file}': Is a directory")
    if not os.access(d.file, os.R_OK) or (not d.readonly and not os.access(d.file, os.W_OK)):
        raise UsageError(f"{d.text}: Could not open '{d.file}': Permission denied"
                         + ("" if d.readonly else " (or give readonly=on)"))


# Options of qemu-system-aarch64 that armvirt does not offer: named as such, not as typos.
QEMU_ONLY = ("-hda", "-hdb", "-cdrom", "-netdev", "-net", "-nic", "-monitor", "-qmp",
             "-chardev", "-accel", "-enable-kvm", "-display", "-vga", "-vnc", "-rtc",
             "-boot", "-object", "-global", "-fsdev", "-virtfs", "-snapshot", "-daemonize", "-pidfile",
             "-uuid", "-k", "-audiodev", "-usb", "-semihosting", "-semihosting-config", "-overcommit",
             "-mem-path", "-mem-prealloc", "-numa", "-L", "-trace", "-plugin", "-loadvm", "-incoming",
             "-sandbox", "-msg", "-parallel", "-full-screen", "-watchdog-action", "-action", "-readconfig",
             "-writeconfig", "-nodefaults", "-no-shutdown", "-qtest", "-runas", "-chroot", "-blockdev",
             "-smbios", "-fw_cfg", "-acpitable", "-iscsi", "-spice", "-portrait", "-rotate", "-sd", "-mtdblock")


def unknown_option(tok: str) -> str:
    """The one line for an option nobody declared (QEMU: "-foo: invalid option")."""
    base = "-" + tok.lstrip("-").split("=")[0]
    if base in QEMU_ONLY:
        return f"{tok}: QEMU option not offered by armvirt"
    return f"{tok}: invalid option"
