"""Probes drive traffic through a proxy and record what happened, when.

A probe does I/O and returns a frozen timeline; it never judges. Checks
(``proxytest.checks``) evaluate timelines as pure functions.
"""

from .context import ProbeContext
from .timeline import (
    CloseTimeline,
    Delivery,
    EchoExchange,
    EchoTimeline,
    HandshakeTimeline,
    PingTimeline,
    ResumeTimeline,
    StreamTimeline,
    SubprotocolTimeline,
)

__all__ = [
    "CloseTimeline",
    "Delivery",
    "EchoExchange",
    "EchoTimeline",
    "HandshakeTimeline",
    "PingTimeline",
    "ProbeContext",
    "ResumeTimeline",
    "StreamTimeline",
    "SubprotocolTimeline",
]
