"""The run's TLS material: a certificate authority and a certificate for the listen host.

One CA per run of the tool (made on first use with trustme, kept in memory), and
one certificate it issues for ``localhost``, ``127.0.0.1`` and ``::1``: every
address a client of proxytest connects to. :meth:`RunAuthority.write` puts the
PEM files a config names through ``{{ tls_cert }}``, ``{{ tls_key }}``,
``{{ tls_pem }}`` and ``{{ tls_ca }}`` into a run dir (0600, removed with it);
:meth:`RunAuthority.client_context` is the client side that trusts the CA and
nothing else. Chromium is told to accept the one certificate by its public
key's hash (:attr:`RunAuthority.spki_sha256`), not to ignore every error.
"""

from __future__ import annotations

import base64
import hashlib
import os
import ssl
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import trustme
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

__all__ = ["CERT_NAMES", "TLS_DIR", "RunAuthority", "TlsFiles", "Trust", "authority"]

# The names the certificate is valid for: every loopback name a client uses.
CERT_NAMES = ("localhost", "127.0.0.1", "::1")
TLS_DIR = "tls"  # the folder inside a run dir


@dataclass(frozen=True)
class TlsFiles:
    """The PEM files of one run dir."""

    cert: Path  # the certificate chain for the listen host
    key: Path  # its private key
    pem: Path  # both in one file (HAProxy's `crt`)
    ca: Path  # the run's CA certificate

    @classmethod
    def at(cls, run_dir: Path) -> TlsFiles:
        """Where a run dir's PEM files are (written by :meth:`RunAuthority.write`)."""
        folder = run_dir / TLS_DIR
        return cls(
            folder / "cert.pem", folder / "key.pem", folder / "cert+key.pem", folder / "ca.pem"
        )


class RunAuthority:
    """A CA and the listen host's certificate, made once per run."""

    def __init__(self) -> None:
        self._ca = trustme.CA(organization_name="proxytest", organization_unit_name="run CA")
        self._leaf = self._ca.issue_cert(*CERT_NAMES)
        self._contexts: dict[tuple[str, ...], ssl.SSLContext] = {}

    @property
    def ca_pem(self) -> bytes:
        return self._ca.cert_pem.bytes()

    @property
    def cert_pem(self) -> bytes:
        return b"".join(blob.bytes() for blob in self._leaf.cert_chain_pems)

    @property
    def key_pem(self) -> bytes:
        return self._leaf.private_key_pem.bytes()

    @property
    def spki_sha256(self) -> str:
        """Base64 SHA-256 of the certificate's public key (Chromium's
        ``--ignore-certificate-errors-spki-list`` takes it)."""
        cert = x509.load_pem_x509_certificate(self._leaf.cert_chain_pems[0].bytes())
        der = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        return base64.b64encode(hashlib.sha256(der).digest()).decode()

    def write(self, run_dir: Path) -> TlsFiles:
        """Write the PEM files into ``run_dir/tls`` (owner-only) and say where."""
        files = TlsFiles.at(run_dir)
        files.cert.parent.mkdir(mode=0o700, exist_ok=True)
        for path, data in (
            (files.cert, self.cert_pem),
            (files.key, self.key_pem),
            (files.pem, self.cert_pem + self.key_pem),
            (files.ca, self.ca_pem),
        ):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(data)
        return files

    def client_context(self, alpn: Sequence[str] = ("http/1.1",)) -> ssl.SSLContext:
        """A client context that trusts the run's CA (only), offering ``alpn``.

        aiohttp speaks HTTP/1.1 only, so its context offers only ``http/1.1``: a
        server that may choose h2 must not be offered it. One context per ALPN list.
        """
        key = tuple(alpn)
        context = self._contexts.get(key)
        if context is None:
            # Not create_default_context(): that trusts the system's CAs as well.
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies, checks names
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            context.load_verify_locations(cadata=self.ca_pem.decode())
            context.set_alpn_protocols(list(key))
            self._contexts[key] = context
        return context


_authority: RunAuthority | None = None
_lock = threading.Lock()  # run dirs are made in worker threads too


def authority() -> RunAuthority:
    """The run's authority, made on first use."""
    global _authority
    with _lock:
        if _authority is None:
            _authority = RunAuthority()
        return _authority


@dataclass(frozen=True)
class Trust:
    """Which server certificates a probe's clients accept.

    The default is the run's CA and nothing else (``run`` and ``check``: the
    listener is a proxy proxytest launched with the run's certificate). Probe
    mode reaches a deployed path with a public certificate: ``system`` trusts
    the system's CAs, ``ca_file`` a private CA besides, and ``insecure`` (only
    when asked for, and labelled in the report) checks no certificate at all.
    """

    system: bool = False
    ca_file: Path | None = None
    insecure: bool = False

    @property
    def label(self) -> str:
        """How the report names it."""
        if self.insecure:
            return "INSECURE: server certificates not verified (--insecure)"
        if not self.system:
            return "the run's CA only"
        return "the system's CAs" + (f" and {self.ca_file}" if self.ca_file else "")

    def client_context(self, alpn: Sequence[str] = ("http/1.1",)) -> ssl.SSLContext:
        """A client context offering ``alpn`` with this trust (cached per ALPN list)."""
        if not (self.system or self.insecure or self.ca_file):
            return authority().client_context(alpn)
        key = (self, tuple(alpn))
        with _lock:
            context = _trusted.get(key)
            if context is None:
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                context.minimum_version = ssl.TLSVersion.TLSv1_2
                if self.insecure:
                    context.check_hostname = False
                    context.verify_mode = ssl.CERT_NONE
                else:
                    if self.system:
                        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
                    if self.ca_file is not None:
                        context.load_verify_locations(cafile=str(self.ca_file))
                context.set_alpn_protocols(list(alpn))
                _trusted[key] = context
            return context


_trusted: dict[tuple[Trust, tuple[str, ...]], ssl.SSLContext] = {}
