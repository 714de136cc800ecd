"""QEMU's `-serial` back ends for the PL011: where its output goes and where its
input comes from (QEMU chardev stdio / file / null).

    stdio        output to stdout; input from stdin: a terminal is put in raw mode
                 (no echo, no line editing; Ctrl-C still ends armvirt, as QEMU's
                 stdio chardev with signal=on) and restored on every exit path;
                 piped or redirected stdin works too, so a test can script a session.
                 Ctrl-A x ends the run from a terminal (QEMU's mux escape).
    file:PATH    output written to PATH; no input (stdin is not read)
    null         output dropped; no input

Piped input is a script, not a clock: the PL011 takes its bytes at points the guest
decides (see armvirt/devices/pl011.py) and, if the next byte is not in the pipe yet,
armvirt waits for it with virtual time stopped.  So the same bytes give the same
output and cycles bit for bit, whenever the writer writes them.  (A writer that
waits for the guest's output before writing works if that output comes before the
guest waits for input again: armvirt flushes stdout before it waits.)  Keys from a
terminal arrive when they are typed: a terminal session is not deterministic.
"""
from __future__ import annotations

import atexit
import os
import select
import signal
import sys
import termios
from dataclasses import dataclass
from typing import Callable

CTRL_A = 0x01


class SerialError(ValueError):
    pass


class SerialQuit(Exception):
    """Ctrl-A x from the terminal: end the run."""


@dataclass(frozen=True)
class SerialSpec:
    kind: str                 # "stdio", "file", "null"
    path: str | None = None


def parse_serial(text: str) -> SerialSpec:
    if text in ("stdio", "null"):
        return SerialSpec(text)
    if text.startswith("file:") and len(text) > 5:
        return SerialSpec("file", text[5:])
    if text in ("mon:stdio", "vc", "pty", "none") or ":" in text:
        raise SerialError(f"-serial {text}: armvirt supports stdio, file:PATH and null")
    raise SerialError(f"-serial {text}: unknown character device (stdio, file:PATH or null)")


class SerialInput:
    """The host end of the UART's receive line: bytes from a file descriptor."""

    def __init__(self, fd: int, before_wait: Callable[[], None] = lambda: None):
        self.fd, self.before_wait = fd, before_wait
        self.tty = os.isatty(fd)
        self.eof = False
        self._buf = bytearray()
        self._saved = None
        self._escape = False
        if self.tty:
            self._raw()

    # --- terminal mode ------------------------------------------------------------------
    def _raw(self) -> None:
        """QEMU qemu_chr_set_echo_stdio(false): raw input, output post-processing kept."""
        try:
            self._saved = termios.tcgetattr(self.fd)
        except termios.error:
            self.tty = False
            return
        atexit.register(self.restore)
        for sig in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(sig) in (signal.SIG_DFL, None):
                signal.signal(sig, self._on_signal)
        t = termios.tcgetattr(self.fd)
        t[0] &= ~(termios.IGNBRK | termios.BRKINT | termios.PARMRK | termios.ISTRIP | termios.INLCR |
                  termios.IGNCR | termios.ICRNL | termios.IXON)
        t[3] &= ~(termios.ECHO | termios.ECHONL | termios.ICANON | termios.IEXTEN)   # ISIG stays
        t[6][termios.VMIN], t[6][termios.VTIME] = 1, 0
        termios.tcsetattr(self.fd, termios.TCSANOW, t)

    def _on_signal(self, signum, frame) -> None:
        self.restore()
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    def restore(self) -> None:
        if self._saved is not None:
            try:
                termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)
            except termios.error:
                pass
            self._saved = None

    close = restore

    # --- bytes ----------------------------------------------------------------------------
    def next_byte(self, wait: float | None) -> int | None:
        """The next input byte.  A pipe or file: block until it is there (None at end
        of input).  A terminal: wait at most `wait` seconds (None: until a key)."""
        while True:
            if not self._buf:
                if self.eof or not self._fill(None if not self.tty else wait):
                    return None
            b = self._buf.pop(0)
            if not self.tty:
                return b
            if self._escape:              # Ctrl-A x quits, Ctrl-A Ctrl-A sends Ctrl-A
                self._escape = False
                if b in (ord("x"), ord("X")):
                    raise SerialQuit()
                if b == CTRL_A:
                    return b
                continue
            if b == CTRL_A:
                self._escape = True
                continue
            return b

    def _fill(self, wait: float | None) -> bool:
        self.before_wait()
        if self.tty:
            ready, _, _ = select.select([self.fd], [], [], wait)
            if not ready:
                return False
        try:
            data = os.read(self.fd, 4096)
        except OSError:
            data = b""
        if not data:
            self.eof = True
            return False
        self._buf += data
        return True


class ScriptInput:
    """Input given up front (a test's scripted stdin): what a pipe holding these bytes
    gives, then end of input."""
    tty = False

    def __init__(self, data: bytes):
        self._data, self.eof = bytearray(data), False
        self.reads = 0

    def next_byte(self, wait: float | None) -> int | None:
        self.reads += 1
        if not self._data:
            self.eof = True
            return None
        return self._data.pop(0)

    def restore(self) -> None:
        pass


def stdin_input(before_wait: Callable[[], None]) -> SerialInput | None:
    """stdin as the UART's input, or None when there is no readable stdin (closed, or
    replaced by an object without a file descriptor, as under pytest)."""
    try:
        fd = sys.stdin.fileno()
        os.fstat(fd)
    except (AttributeError, ValueError, OSError):
        return None
    return SerialInput(fd, before_wait)
