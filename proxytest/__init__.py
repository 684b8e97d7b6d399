"""proxytest: will your real-time traffic (SSE, WebSocket) survive your reverse proxy?

The public API is small: load a matrix, run its targets, read the result.

    from proxytest import load_matrix, run_targets, RunOptions
    matrix = load_matrix(Path("matrix.yaml"), tuple(ADAPTERS))
    result = asyncio.run(run_targets(matrix.targets, RunOptions()))
"""

__version__ = "0.1.0"

from .adapters import ADAPTERS
from .checks import CHECKS
from .matrix import Matrix, TargetSpec, load_matrix
from .origin import Origin
from .results import CheckResult, RunResult, TargetResult, Verdict
from .runner import RunOptions, run_targets

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
