#!/usr/bin/env python3
"""vpinn command line: ``python run.py solve [problem.toml]``, ``python run.py bench``, ..."""

import sys

from vpinn.commands import main

if __name__ == "__main__":
    sys.exit(main())
