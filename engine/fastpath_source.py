"""The C fast path's sources and their identity: the build embeds SOURCE_ID in the
extension, and engine.fastpath refuses an extension built from other sources."""
import hashlib
import os

HERE = os.path.dirname(os.path.abspath(__file__))
MARKER = b"armvirt-fastpath-source:"


def read(name: str) -> str:
    with open(os.path.join(HERE, name)) as f:
        return f.read()


def source_id() -> str:
    """sha256 of fastpath.h and fastpath.c as they are now (16 hex digits)."""
    h = hashlib.sha256()
    for name in ("fastpath.h", "fastpath.c"):
        h.update(read(name).encode())
    return h.hexdigest()[:16]


def embedded_id(path: str) -> str | None:
    """The source id a built extension carries, or None if it carries none."""
    with open(path, "rb") as f:
        data = f.read()
    at = data.find(MARKER)
    if at < 0:
        return None
    at += len(MARKER)
    return data[at:at + 16].decode("ascii", "replace")
