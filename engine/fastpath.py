"""Loads the compiled fast path, building it in place when running from a source tree."""
import ctypes
import glob
import importlib.util
import os

import unicorn

from engine import fastpath_source

# The extension calls uc_reg_read & co. without linking libunicorn: make the very
# library the Python binding loaded visible to it (same engine, same version).
_libs = glob.glob(os.path.join(os.path.dirname(unicorn.__file__), "lib", "libunicorn.so*"))
if not _libs:
    raise ImportError("unicorn's shared library was not found next to the binding")
ctypes.CDLL(_libs[0], mode=ctypes.RTLD_GLOBAL)


class StaleFastPath(SystemExit):
    """The built extension does not come from the fastpath.c/.h beside it.  A SystemExit:
    whatever imports the engine (the CLI, a test, the bench) ends with this one line,
    exit status 1, and no traceback."""


def check_built(path: str) -> None:
    """Refuse an extension built from older sources: it would count and time with
    yesterday's rules (cffi does not rebuild it when fastpath.c changes)."""
    built, now = fastpath_source.embedded_id(path), fastpath_source.source_id()
    if built != now:
        raise StaleFastPath(f"armvirt: error: {path} was built from other sources than engine/fastpath.c/.h "
                            f"(built {built or 'without a source id'}, sources {now}): "
                            f"rebuild it with `pip install -e .`")


_spec = importlib.util.find_spec("engine._fastpath")
if _spec is None:  # a bare source tree: build next to the sources once
    from engine import fastpath_build
    fastpath_build.ffibuilder.compile(tmpdir=os.path.dirname(fastpath_build.HERE))
    _spec = importlib.util.find_spec("engine._fastpath")
check_built(_spec.origin)
from engine._fastpath import ffi, lib  # noqa: E402

__all__ = ["ffi", "lib"]
