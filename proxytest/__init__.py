"""proxytest: will your real-time traffic (SSE, WebSocket) survive your reverse proxy?

The public API is small: load a matrix, turn it (and any overrides) into run
options, run its targets, read the result::

    matrix = load_matrix(Path("matrix.yaml"), tuple(ADAPTERS))
    options = RunOptions.from_matrix(matrix, checks=["sse.*"])
    result = asyncio.run(run_targets(matrix.targets, options))
    sys.exit(result.exit_code)

How the package is laid out: docs/architecture.md.
"""

from ._version import VERSION as __version__
from .adapters import ADAPTERS
from .checks import CHECKS
from .matrix import Matrix, TargetSpec, load_matrix
from .options import RunOptions
from .origin import Origin
from .results import CheckResult, RunResult, TargetResult, Verdict
from .runner import run_targets

__all__ = [
    "ADAPTERS",
    "CHECKS",
    "CheckResult",
    "Matrix",
    "Origin",
    "RunOptions",
    "RunResult",
    "TargetResult",
    "TargetSpec",
    "Verdict",
    "__version__",
    "load_matrix",
    "run_targets",
]
