"""Loads the compiled fast path, building it in place when running from a source tree."""
import ctypes
import glob
import os

import unicorn

# The extension calls uc_reg_read & co. without linking libunicorn: make the very
# library the Python binding loaded visible to it (same engine, same version).
_libs = glob.glob(os.path.join(os.path.dirname(unicorn.__file__), "lib", "libunicorn.so*"))
if not _libs:
    raise ImportError("unicorn's shared library was not found next to the binding")
ctypes.CDLL(_libs[0], mode=ctypes.RTLD_GLOBAL)

try:
    from engine._fastpath import ffi, lib
except ImportError:  # a bare source tree: build next to the sources once
    from engine import fastpath_build
    fastpath_build.ffibuilder.compile(tmpdir=os.path.dirname(fastpath_build.HERE))
    from engine._fastpath import ffi, lib

__all__ = ["ffi", "lib"]
