"""The test origin: an aiohttp server whose routes are behaviours.

``Origin`` runs in the tool's own event loop; ``OriginProcess`` runs it in a
process of its own, for checks where it must die for real.
"""

from .process import OriginProcess
from .server import Origin, OriginRecord
from .view import OriginView

__all__ = ["Origin", "OriginProcess", "OriginRecord", "OriginView"]
