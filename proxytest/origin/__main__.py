"""``python -m proxytest.origin``: the same options as ``proxytest origin`` (origin/cli.py)."""

import sys

from .cli import main

sys.exit(main())
