"""Loads the compiled fast path, building it in place when running from a source tree."""
try:
    from engine._fastpath import ffi, lib
except ImportError:  # not installed with `pip install`: build next to the sources once
    from engine import fastpath_build
    fastpath_build.ffibuilder.compile(tmpdir=fastpath_build.os.path.dirname(fastpath_build.HERE))
    from engine._fastpath import ffi, lib

__all__ = ["ffi", "lib"]
