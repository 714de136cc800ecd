"""Device trees as comparable sets: {node path: {property: value}} with phandles
replaced by the path of the node they name, from a DTB blob or from `dtc -O dts`
text (so a committed QEMU snapshot compares without dtc or QEMU installed)."""
from __future__ import annotations

import re
import struct

# Properties whose cells are phandles (all of them, for these bindings as QEMU uses them).
PHANDLE_PROPS = ("interrupt-parent", "clocks", "cpu", "msi-parent")


def from_blob(blob: bytes) -> dict[str, dict[str, bytes]]:
    """Walk the structure block ourselves: pyFDT guesses property types and loses
    bytes (a cell pair 0x0 0x48000000 comes back as the string "H")."""
    magic, total, off_struct, off_strings = struct.unpack_from(">IIII", blob)
    assert magic == 0xD00DFEED, f"not a DTB: magic {magic:#x}"
    out: dict[str, dict[str, bytes]] = {}
    stack: list[str] = []
    pos = off_struct
    while True:
        (tok,) = struct.unpack_from(">I", blob, pos)
        pos += 4
        if tok == 1:                                   # FDT_BEGIN_NODE
            end = blob.index(b"\0", pos)
            name = blob[pos:end].decode()
            pos = (end + 4) & ~3
            path = "/" if not stack else f"{stack[-1].rstrip('/')}/{name}"
            stack.append(path)
            out[path] = {}
        elif tok == 2:                                 # FDT_END_NODE
            stack.pop()
        elif tok == 3:                                 # FDT_PROP
            length, nameoff = struct.unpack_from(">II", blob, pos)
            pos += 8
            nstart = off_strings + nameoff
            name = blob[nstart:blob.index(b"\0", nstart)].decode()
            out[stack[-1]][name] = bytes(blob[pos:pos + length])
            pos = (pos + length + 3) & ~3
        elif tok == 4:                                 # FDT_NOP
            continue
        elif tok == 9:                                 # FDT_END
            return out
        else:
            raise ValueError(f"bad DTB token {tok} at {pos - 4:#x}")


_TOKEN = re.compile(r'\s*(?:(?P<close>\};)|(?P<open>[^\s=;{}]+)\s*\{|(?P<prop>[^\s=;{}]+)\s*(?:=\s*(?P<val>(?:"(?:\\.|[^"\\])*"|<[^>]*>|\[[^\]]*\]|[\s,])+))?;)')
_ESC = {"0": b"\0", "n": b"\n", "t": b"\t", "r": b"\r", "\\": b"\\", '"': b'"', "'": b"'"}


def _value(text: str) -> bytes:
    out = b""
    for m in re.finditer(r'"((?:\\.|[^"\\])*)"|<([^>]*)>|\[([^\]]*)\]', text):
        if m.group(1) is not None:
            s, i, b = m.group(1), 0, b""
            while i < len(s):
                if s[i] == "\\":
                    if s[i + 1] == "x":
                        b += bytes([int(s[i + 2:i + 4], 16)])
                        i += 4
                        continue
                    b += _ESC[s[i + 1]]
                    i += 2
                else:
                    b += s[i].encode()
                    i += 1
            out += b + b"\0"
        elif m.group(2) is not None:
            out += b"".join(struct.pack(">I", int(c, 0)) for c in m.group(2).split())
        else:
            out += bytes(int(c, 16) for c in m.group(3).split())
    return out


def from_dts(text: str) -> dict[str, dict[str, bytes]]:
    """Parse what `dtc -I dtb -O dts` prints (no labels, includes or overlays)."""
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("//"))
    body = body.replace("/dts-v1/;", "", 1)
    out: dict[str, dict[str, bytes]] = {}
    stack: list[str] = []
    pos = 0
    while pos < len(body):
        if not body[pos:].strip():
            break
        m = _TOKEN.match(body, pos)
        if m is None:
            raise ValueError(f"cannot parse dts near: {body[pos:pos + 60]!r}")
        pos = m.end()
        if m.group("open"):
            name = m.group("open")
            path = "/" if name == "/" else f"{(stack[-1] if stack else '').rstrip('/')}/{name}"
            stack.append(path)
            out[path] = {}
        elif m.group("close"):
            stack.pop()
        else:
            out[stack[-1]][m.group("prop")] = _value(m.group("val") or "")
    return out


def normalise(tree: dict[str, dict[str, bytes]]) -> set[tuple[str, str, str]]:
    """(path, property, value) triples: phandle cells become node paths, `phandle`
    itself is dropped (any unique value will do), strings shown as strings."""
    by_handle = {struct.unpack(">I", props["phandle"])[0]: path
                 for path, props in tree.items() if "phandle" in props}
    out = set()
    for path, props in tree.items():
        out.add((path, "", "node"))
        for name, raw in props.items():
            if name == "phandle":
                continue
            if name in PHANDLE_PROPS and len(raw) % 4 == 0:
                cells = struct.unpack(f">{len(raw) // 4}I", raw)
                val = "&" + ",&".join(by_handle.get(c, f"?{c:#x}") for c in cells)
            elif raw[-1:] == b"\0" and all(raw[:-1].split(b"\0")) and all(32 <= c < 127 or c == 0 for c in raw):
                val = repr(raw.decode().rstrip("\0").split("\0"))
            elif raw and len(raw) % 4 == 0:
                val = "<" + " ".join(f"{c:#x}" for c in struct.unpack(f">{len(raw) // 4}I", raw)) + ">"
            else:
                val = raw.hex()
            out.add((path, name, val))
    return out
