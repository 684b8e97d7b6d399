"""Secrets out of the config text that reports show.

Reports carry each target's config files as written (runner.config_files), and
reports travel: CI artifacts, pages, chat. A person's own config may hold a
password, a token or a private key. :func:`mask_secrets` keeps every line (line
numbers in messages still point right) and every key, and replaces what looks
like a secret with ``********``:

* the value after a key that names a secret: ``password``, ``passwd``,
  ``passphrase``, ``secret``, ``token``, ``api_key``/``apikey``, ``access_key``,
  ``private_key``, ``credentials``, ``authorization`` (a header set to a bearer
  token), as ``key: value``, ``key = value`` or ``key value``, a key ending
  with one of these words included (``client_secret``, ``insecure-password``);
  a YAML key with no value on its line takes the more indented lines below;
* HAProxy's ``stats auth USER:PASSWORD``;
* private key material: the body of a ``-----BEGIN … PRIVATE KEY-----`` block;
* password hashes (``$2y$…``, ``$apr1$…``, ``$6$…``, ``{SHA}…``: htpasswd
  lines in Traefik's and Caddy's basic auth), and the password of a URL
  (``scheme://user:password@host``).

A key that names a file (``auth_basic_user_file``, ``ssl_password_file``, an
Envoy data source's ``filename:``), a variable (``$http_authorization``) or a
``{{ placeholder }}`` (proxytest's own files, ``{{ tls_key }}``) is left alone: a
path is not the secret. So is an empty value (``proxy_set_header
Proxy-Authorization "";`` removes the header).
"""

from __future__ import annotations

import re

__all__ = ["MASK", "mask_secrets"]

MASK = "********"

_SECRET_WORD = (
    r"(?:password|passwd|passphrase|secret|token|api[-_]?key|apikey|access[-_]?key"
    r"|private[-_]?key|credentials?|authorization)"
)
# A key (maybe quoted) that ends with a secret word, its separator, and the value
# up to a trailing `;` or `,`.
_KEYED = re.compile(
    r"(?P<key>(?<![\w.$-])[\"']?[\w.-]*?" + _SECRET_WORD + r"[\"']?"
    r"|\bstats\s+auth)"
    r"(?P<sep>\s*[:=]\s*|\s+)(?P<value>.*?)(?P<end>[;,]?\s*)$",
    re.IGNORECASE,
)
_BLOCK_SCALAR = {"", "|", ">", "|-", ">-", "|+", ">+"}
_PEM_BEGIN = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")
_PEM_END = re.compile(r"-----END [A-Z0-9 ]*PRIVATE KEY-----")
_PEM_INLINE = re.compile(
    r"(-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----).*?(-----END [A-Z0-9 ]*PRIVATE KEY-----)"
)
_HASH = re.compile(
    r"\$(?:2[abxy]?|1|5|6|apr1|y|argon2(?:id|i|d)?)\$[^\s\"',;]+|\{SSHA?\}[A-Za-z0-9+/=]+"
)
# A value that is a file, not the secret: `{filename: …}` (an Envoy data source),
# `filename: …` on the line below a secret key, or one `{{ placeholder }}`.
_FILE_VALUE = re.compile(r"""^(?:\{\s*filename\s*:|filename\s*:|["']?\{\{[^{}]*\}\}["']?$)""")
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-z][a-z0-9+.-]*://[^/\s:@\"']+:)[^/\s@\"']+(?=@)", re.I)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _mask_line(line: str) -> tuple[str, bool]:
    """``line`` with its secrets masked; True when its value continues on the lines below."""
    line = _PEM_INLINE.sub(rf"\1{MASK}\2", line)
    line = _URL_PASSWORD.sub(rf"\g<head>{MASK}", line)
    line = _HASH.sub(MASK, line)
    match = _KEYED.search(line)
    if match is None:
        return line, False
    value = match["value"].strip()
    if value in _BLOCK_SCALAR and ":" in match["sep"]:
        return line, True  # `password:` or `token: |`: the value is the block below
    if not value or value in (MASK, '""', "''") or _FILE_VALUE.match(value):
        return line, False
    masked = line[: match.start("value")] + MASK + match["end"]
    return masked, False


def mask_secrets(text: str) -> str:
    """``text`` with what looks like a secret replaced by ``********`` (see the module)."""
    out: list[str] = []
    block_indent: int | None = None  # masking the lines more indented than this
    in_pem = False
    for line in text.splitlines(keepends=True):
        body = line.rstrip("\r\n")
        ending = line[len(body) :]
        if in_pem:
            if _PEM_END.search(body):
                in_pem = False
                out.append(line)
            else:
                out.append(" " * _indent(body) + MASK + ending)
            continue
        if block_indent is not None:
            if not body.strip():
                out.append(line)
                continue
            if _indent(body) > block_indent:
                kept = _FILE_VALUE.match(body.strip())
                out.append(line if kept else " " * _indent(body) + MASK + ending)
                continue
            block_indent = None
        if _PEM_BEGIN.search(body) and not _PEM_END.search(body):
            in_pem = True
            out.append(line)
            continue
        masked, continues = _mask_line(body)
        if continues:
            block_indent = _indent(body)
        out.append(masked + ending)
    return "".join(out)
