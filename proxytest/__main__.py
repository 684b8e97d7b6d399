"""``python -m proxytest``: the same as the ``proxytest`` command."""

import sys

from .cli import main

sys.exit(main())
