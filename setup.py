from setuptools import setup

# The engine's C fast path (instruction counting, virtual counter) is built by cffi.
setup(cffi_modules=["engine/fastpath_build.py:ffibuilder"])
