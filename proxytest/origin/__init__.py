"""The test origin: an aiohttp server whose routes are behaviours."""

from .server import Origin, OriginRecord

__all__ = ["Origin", "OriginRecord"]
