import sys

from armvirt.cli import main

sys.exit(main())
