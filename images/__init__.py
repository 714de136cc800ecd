"""armvirt's bundled guest images (package data `armvirt.images`, the built ELFs beside
their sources here; `make -C images` builds them).  armvirt.paths finds them through
importlib.resources, so they are the same files in a checkout and in an installed wheel."""
