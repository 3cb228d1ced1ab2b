"""``python -m vpinn.commands <command> ...``: the same as ``python run.py <command> ...``."""

import sys

from vpinn.commands import main

sys.exit(main())
