"""`python -m fairtrial.cli` (the detached supervisor of `fairtrial run --detach` runs so)."""

import sys

from fairtrial.cli import main

sys.exit(main())
