"""The GDB remote stub's server: one TCP connection at a time, the packets of the
GDB Remote Serial Protocol (dispatched by their first letter, and by name for q, Q
and v packets), and stop replies.  Behaviour follows QEMU's gdbstub (gdbstub.c,
system.c): thread-ids, error numbers (E22 bad argument, E14 bad address), 'T05'
for '?', breakpoints cleared on '?', the VM stopped when GDB connects."""
from __future__ import annotations

import select
import socket
import sys

from armvirt.gdbstub import monitor, packet, regs
from armvirt.gdbstub.control import SIGINT, SIGTRAP, WATCH_KINDS, RunControl, Stop
from armvirt.gdbstub.memory import GuestMemory
from armvirt.gdbstub.threads import ALL, Threads

PACKET_SIZE = 4096              # QEMU's MAX_PACKET_LENGTH
RESUME = object()               # a handler's answer: the guest runs on, no reply now
DETACHED = object()             # ... and GDB has gone: no stop reply is owed
VCONT_ACTIONS = "vCont;c;C;s;S"


class GdbKill(Exception):
    """GDB killed the target ('k', vKill): the run ends now."""


class GdbServer:
    def __init__(self, endpoint: tuple[str, int], machines: list, start_stopped: bool, log=sys.stderr):
        """`endpoint`: (host, port) to listen on (armvirt.qemu_args.parse_gdb)."""
        host, port = endpoint
        self.endpoint = f"tcp:{'' if host == '0.0.0.0' else host}:{port}"
        self.log = log
        self.machines = machines
        vms = [m.vm for m in machines]
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.listener.bind((host, port))
        except OSError as e:
            self.listener.close()
            raise ValueError(f"-gdb {self.endpoint}: {e.strerror}") from None
        self.listener.listen(1)
        self.threads = Threads(vms)
        self.control = RunControl(self.threads, self)
        self.memory = {id(vm): GuestMemory(vm) for vm in vms}
        self.conn: socket.socket | None = None
        self._reset_session()
        if start_stopped:
            self.control.pending = Stop(SIGTRAP, vms[0].vcpus[0], silent=True)
            print(f"armvirt: gdbstub: the vCPUs start stopped (-S); waiting for GDB on {self.endpoint}", file=log)

    def _reset_session(self) -> None:
        self.reader = packet.PacketReader()
        self.no_ack = False
        self.swbreak = self.hwbreak = False
        self.waiting = False          # a resume awaits its stop reply
        self.last_sent = b""
        self.queue: list = []         # events read after a resume packet
        self.threads.multiprocess = False
        self.threads.reset_attach()
        first = next(iter(self.threads.attached_vcpus()))
        self.g_vcpu = self.c_vcpu = first

    # --- the connection -----------------------------------------------------------------------
    def _accept(self, block: bool) -> bool:
        if not block and not select.select([self.listener], [], [], 0)[0]:
            return False
        conn, _ = self.listener.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.conn = conn
        self._reset_session()
        return True

    def _drop(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.conn = None

    def _read(self, block: bool) -> list:
        """Events from the connection; [] if nothing (non-blocking) or it closed."""
        if self.queue:
            out, self.queue = self.queue, []
            return out
        if not block and not select.select([self.conn], [], [], 0)[0]:
            return []
        try:
            data = self.conn.recv(65536)
        except OSError:
            data = b""
        if not data:
            self._drop()
            return []
        return self.reader.feed(data)

    def _send_raw(self, raw: bytes) -> None:
        try:
            self.conn.sendall(raw)
        except OSError:
            self._drop()

    def send(self, data: bytes | str) -> None:
        raw = packet.frame(data.encode() if isinstance(data, str) else data, rle=True)
        self.last_sent = raw
        if self.conn is not None:
            self._send_raw(raw)

    # --- while the guest runs -----------------------------------------------------------------
    def poll(self, vcpu) -> Stop | None:
        """A look at the connection while the guest runs: a new GDB stops the machine
        (as QEMU's does), so does Ctrl-C (0x03)."""
        who = vcpu or self.c_vcpu
        if self.conn is None:
            return Stop(SIGTRAP, who, silent=True) if self._accept(block=False) else None
        for ev in self._read(block=False):
            if ev.kind == "interrupt":
                return Stop(SIGINT, who)
            if ev.kind == "nak" and self.last_sent:
                self._send_raw(self.last_sent)
        return None

    # --- stopped: serve GDB until it resumes the guest -------------------------------------------
    def stop(self, stop: Stop) -> None:
        self.control.steps = {}
        if self.threads.is_attached(stop.vcpu):
            self.g_vcpu = self.c_vcpu = stop.vcpu
        if self.waiting and not stop.silent and self.conn is not None:
            self.send(self.stop_reply(stop))
            self.waiting = False
        self.serve()

    def stop_reply(self, stop: Stop) -> str:
        s = f"T{stop.signal:02x}thread:{self.threads.ident(stop.vcpu)};"
        if stop.reason in ("watch", "rwatch", "awatch"):
            s += f"{stop.reason}:{stop.addr:x};"
        elif (stop.reason == "swbreak" and self.swbreak) or (stop.reason == "hwbreak" and self.hwbreak):
            s += f"{stop.reason}:;"
        return s

    def serve(self) -> None:
        while True:
            if self.conn is None:
                self._accept(block=True)
            for i, ev in enumerate(evs := self._read(block=True)):
                if self._event(ev) is RESUME:
                    self.queue = evs[i + 1:]
                    return

    def _event(self, ev):
        if ev.kind == "nak":
            if self.last_sent:
                self._send_raw(self.last_sent)
            return None
        if ev.kind == "bad":
            if not self.no_ack:
                self._send_raw(b"-")
            return None
        if ev.kind != "packet":
            return None                 # acks, and 0x03 while already stopped
        if not self.no_ack:
            self._send_raw(b"+")
        try:
            reply = self.handle(ev.data)
        except (ValueError, IndexError, KeyError, TypeError, OverflowError):
            reply = "E22"                          # a malformed packet: EINVAL, as QEMU answers
        if reply is RESUME or reply is DETACHED:
            self.waiting = reply is RESUME
            return RESUME
        if reply is not None:
            self.send(reply)
        return None

    def exited(self, status: int) -> None:
        """The run is over: tell GDB (W, as QEMU's gdb_exit) and close."""
        if self.conn is not None and self.waiting:
            self.send(f"W{status & 0xFF:02x}")
        self.close()

    def close(self) -> None:
        moved = self.control.moved_blocks()
        if moved:
            print(f"armvirt: gdbstub: {moved} translation blocks took another shape under the debugger's "
                  f"hooks: cycles may differ from a run without it", file=self.log)
        self._drop()
        self.listener.close()
        self.control.detach_all()

    # --- packets --------------------------------------------------------------------------------
    def handle(self, data: bytes):
        if not data:
            return ""
        head = chr(data[0])
        if head == "X":                            # binary payload
            return self._write_mem_binary(data[1:])
        text = data.decode("latin-1")
        handler = self.COMMANDS.get(head)
        return handler(self, text[1:]) if handler else ""

    def user_device(self, vm, ipa: int):
        """The user-space device (the VMM's bus) at an IPA of `vm`, as (device, offset)."""
        m = next(m for m in self.machines if m.vm is vm)
        return m.user_bus.find(ipa)

    def _state(self, vcpu=None):
        return self.threads.state(vcpu or self.g_vcpu)

    def _mem(self, vcpu=None) -> GuestMemory:
        return self.memory[id((vcpu or self.g_vcpu).vm)]

    def _halt_reason(self, _):
        # QEMU: '?' always answers T05 for the current thread and drops every breakpoint
        # ("gdb is doing an initial connect").
        self.control.clear()
        return f"T{SIGTRAP:02x}thread:{self.threads.ident(self.c_vcpu)};"

    def _read_regs(self, _):
        return regs.read_all(self._state())

    def _write_regs(self, args):
        regs.write_all(self._state(), args)
        return "OK"

    def _read_reg(self, args):
        n = int(args, 16)
        if n >= len(regs.REGISTERS):
            return "E14"
        r = regs.REGISTERS[n]
        return regs.to_hex(r, self._state().get(r.name))

    def _write_reg(self, args):
        n, _, value = args.partition("=")
        n = int(n, 16)
        if n >= len(regs.REGISTERS):
            return "E14"
        r = regs.REGISTERS[n]
        self._state().set(r.name, regs.from_hex(r, value))
        return "OK"

    @staticmethod
    def _addr_len(args: str) -> tuple[int, int]:
        a, _, n = args.partition(",")
        return int(a, 16), int(n, 16)

    def _read_mem(self, args):
        addr, n = self._addr_len(args)
        if n > PACKET_SIZE // 2:
            return "E22"
        data = self._mem().read(self._state(), addr, n) if n else b""
        return "E14" if data is None else data.hex()

    def _write_mem(self, args):
        where, _, hexdata = args.partition(":")
        addr, n = self._addr_len(where)
        data = bytes.fromhex(hexdata)
        if len(data) != n:
            return "E22"
        return "OK" if not n or self._mem().write(self._state(), addr, data) else "E14"

    def _write_mem_binary(self, payload: bytes):
        where, _, data = payload.partition(b":")
        addr, n = self._addr_len(where.decode("latin-1"))
        if len(data) != n:
            return "E22"
        return "OK" if not n or self._mem().write(self._state(), addr, data) else "E14"

    def _breakpoint(self, args, insert: bool):
        kind, addr, length = args.split(",")[:3]
        kind, addr, length = int(kind), int(addr, 16), int(length, 16)
        pid = self.threads.pid(self.g_vcpu)
        c = self.control
        if kind in (0, 1):
            (c.insert_breakpoint if insert else c.remove_breakpoint)(pid, kind, addr)
            return "OK"
        if kind not in WATCH_KINDS or length <= 0:
            return ""                              # not supported: GDB falls back
        if not insert:
            c.remove_watchpoint(pid, kind, addr, length)
            return "OK"
        ranges = self._mem().host_ranges(self._state(), addr, length)
        if ranges is None:
            return "E14"
        c.insert_watchpoint(pid, kind, addr, length, ranges)
        return "OK"

    def _insert(self, args):
        return self._breakpoint(args, True)

    def _remove(self, args):
        return self._breakpoint(args, False)

    def _set_pc(self, args: str, vcpu) -> None:
        if args:
            self.threads.state(vcpu).set("pc", int(args, 16))

    def _continue(self, args):
        self._set_pc(args, self.c_vcpu)
        self.control.resume([])
        return RESUME

    def _step(self, args):
        self._set_pc(args, self.c_vcpu)
        self.control.resume([self.c_vcpu])
        return RESUME

    def _continue_sig(self, args):           # C sig[;addr]: signals mean nothing to a VM (QEMU)
        self.control.resume([])
        return RESUME

    def _step_sig(self, args):
        self.control.resume([self.c_vcpu])
        return RESUME

    def _set_thread(self, args):
        op, tid = args[:1], args[1:]
        pid, t = self.threads.parse(tid)
        if t == ALL or pid == ALL:
            return "OK"
        vcpu = self.threads.find(pid, t)
        if vcpu is None or op not in "cg":
            return "E22"
        if op == "c":
            self.c_vcpu = vcpu
        else:
            self.g_vcpu = vcpu
        return "OK"

    def _thread_alive(self, args):
        return "OK" if self.threads.find(*self.threads.parse(args)) is not None else "E22"

    def _detach(self, args):
        pid = int(args[1:], 16) if args.startswith(";") else 1
        p = self.threads.process(pid)
        if p is None:
            return "E22"
        self.control.clear(pid)
        p.attached = False
        if not any(q.attached for q in self.threads.processes):
            self.send("OK")
            self.control.resume([])
            self._drop()                           # GDB closes its side too
            return DETACHED
        first = next(iter(self.threads.attached_vcpus()))
        if self.threads.pid(self.g_vcpu) == pid:
            self.g_vcpu = first
        if self.threads.pid(self.c_vcpu) == pid:
            self.c_vcpu = first
        return "OK"

    def _kill(self, _):
        raise GdbKill()

    def _extended(self, _):
        return "OK"

    # q / Q / v packets, by name
    def _query(self, args):
        name, sep, rest = args.partition(":") if not args.startswith(("Rcmd,", "ThreadExtraInfo,")) \
            else args.partition(",")
        handler = self.QUERIES.get(name)
        return handler(self, rest) if handler else ""

    def _supported(self, args):
        features = args.split(";")
        self.threads.multiprocess = "multiprocess+" in features
        self.swbreak, self.hwbreak = "swbreak+" in features, "hwbreak+" in features
        return (f"PacketSize={PACKET_SIZE:x};qXfer:features:read+;swbreak+;hwbreak+;"
                "vContSupported+;multiprocess+;QStartNoAckMode+")

    def _xfer(self, args):
        obj, _, rest = args.partition(":")
        op, _, rest = rest.partition(":")
        if obj != "features" or op != "read":
            return ""
        annex, _, span = rest.partition(":")
        doc = regs.annexes().get(annex)
        if doc is None:
            return "E00"
        off, n = self._addr_len(span)
        body = doc.encode()
        if off > len(body):
            return "E00"
        n = min(n, (PACKET_SIZE - 5) // 2)
        chunk = body[off:off + n]
        return (b"m" if off + n < len(body) else b"l") + packet.escape(chunk)

    def _first_threads(self, _):
        ids = [self.threads.ident(v) for v in self.threads.attached_vcpus()]
        return "m" + ",".join(ids)

    def _next_threads(self, _):
        return "l"

    def _current_thread(self, _):
        p = self.threads.process_of(self.g_vcpu)
        return "QC" + self.threads.ident(p.vm.vcpus[0])

    def _thread_extra(self, args):
        vcpu = self.threads.find(*self.threads.parse(args))
        return "E22" if vcpu is None else self.threads.extra_info(vcpu).encode().hex()

    def _attached(self, _):
        return "1"

    def _rcmd(self, args):
        text = monitor.run(bytes.fromhex(args).decode("latin-1"), self)
        if text:
            for i in range(0, len(text), 1024):
                self.send("O" + text[i:i + 1024].encode().hex())
        return "OK"

    def _set(self, args):
        if args == "StartNoAckMode":
            self.send("OK")                        # acknowledged once more, then no acks
            self.no_ack = True
            return None
        return ""

    def _v(self, args):
        name, _, rest = args.partition(";")
        if name == "Cont?":
            return VCONT_ACTIONS
        handler = self.V_COMMANDS.get(name)
        return handler(self, rest) if handler else ""

    def _vcont(self, args):
        """vCont;action[:thread-id]...: the first action that names a vCPU is its action."""
        chosen = {}
        for item in args.split(";"):
            action, _, tid = item.partition(":")
            if not action or action[0] not in "cCsS":
                return ""
            targets = [self.threads.find(*self.threads.parse(tid))] if tid and not tid.endswith("-1") \
                else list(self._process_vcpus(tid))
            if None in targets:
                return "E22"
            for v in targets:
                chosen.setdefault(id(v), (v, action[0].lower()))
        steps = [v for v, a in chosen.values() if a == "s"]
        if steps:
            self.c_vcpu = steps[-1]
        self.control.resume(steps)
        return RESUME

    def _process_vcpus(self, tid: str):
        if not tid:
            return self.threads.attached_vcpus()
        pid, _ = self.threads.parse(tid)
        if pid == ALL or pid == 0:
            return self.threads.attached_vcpus()
        p = self.threads.process(pid)
        return p.vm.vcpus if p is not None and p.attached else [None]

    def _vattach(self, args):
        p = self.threads.process(int(args, 16))
        if p is None or not p.vm.vcpus:
            return "E22"
        p.attached = True
        self.g_vcpu = self.c_vcpu = p.vm.vcpus[0]
        return f"T{SIGTRAP:02x}thread:{self.threads.ident(self.c_vcpu)};"

    def _vkill(self, args):
        self.send("OK")
        return self._kill(args)

    COMMANDS = {"?": _halt_reason, "g": _read_regs, "G": _write_regs, "p": _read_reg, "P": _write_reg,
                "m": _read_mem, "M": _write_mem, "Z": _insert, "z": _remove, "c": _continue,
                "s": _step, "C": _continue_sig, "S": _step_sig, "H": _set_thread, "T": _thread_alive,
                "D": _detach, "k": _kill, "!": _extended, "q": _query, "Q": _set, "v": _v}
    QUERIES = {"Supported": _supported, "Xfer": _xfer, "fThreadInfo": _first_threads,
               "sThreadInfo": _next_threads, "C": _current_thread, "ThreadExtraInfo": _thread_extra,
               "Attached": _attached, "Rcmd": _rcmd}
    V_COMMANDS = {"Cont": _vcont, "Attach": _vattach, "Kill": _vkill}
