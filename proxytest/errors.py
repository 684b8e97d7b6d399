"""Exceptions raised by proxytest.

Findings about a proxy are never exceptions: a proxy that breaks an upgrade is a
``fail`` verdict. Exceptions mean the tool could not do its job::

    ProxytestError
    ├── Unsupported                 a check cannot apply to this target: verdict ``skip``
    ├── UsageError                  bad input from the user: exit code 2
    │   ├── MatrixError             matrix.yaml is malformed or names unknown things
    │   ├── TemplateError           a config template has an unknown placeholder
    │   └── ReportError             a saved JSON report cannot be read back
    └── HarnessError                the harness could not judge a target: verdict ``error``
        ├── BinaryNotFound          the proxy is not installed: verdict ``skip``
        ├── ConfigRejected          the proxy's own checker refused the config
        └── LaunchError             the proxy exited, or never became ready

Every message is built from attributes and says what to do next.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "BinaryNotFound",
    "ConfigRejected",
    "HarnessError",
    "LaunchError",
    "MatrixError",
    "ProxytestError",
    "ReportError",
    "TemplateError",
    "Unsupported",
    "UsageError",
]


class ProxytestError(Exception):
    """Base class of every error proxytest raises on purpose."""


class Unsupported(ProxytestError):
    """A check does not apply to this target (e.g. a proxy with no reload to drive)."""


def _where(file: Path | str | None, line: int | None) -> str:
    if file is None:
        return ""
    return f"{file}:{line}: " if line else f"{file}: "


class UsageError(ProxytestError):
    """Bad input from the user. The CLI prints it and exits with code 2."""

    def __init__(
        self,
        problem: str,
        *,
        file: Path | str | None = None,
        line: int | None = None,
        fix: str | None = None,
    ) -> None:
        self.problem = problem
        self.file = file
        self.line = line
        self.fix = fix
        super().__init__(str(self))

    def __str__(self) -> str:
        text = f"{_where(self.file, self.line)}{self.problem}"
        if self.fix:
            text += f"\n  fix: {self.fix}"
        return text


class MatrixError(UsageError):
    """matrix.yaml (or the equivalent command-line options) cannot be used."""


class TemplateError(UsageError):
    """A config template cannot be rendered."""


class ReportError(UsageError):
    """A saved JSON report (``proxytest report FILE``) is missing or malformed."""


class HarnessError(ProxytestError):
    """The harness could not judge a target; reported as verdict ``error``."""

    def __init__(self, problem: str, *, detail: str = "") -> None:
        self.problem = problem
        self.detail = detail
        super().__init__(problem)


class BinaryNotFound(HarnessError):
    """The proxy binary is missing. Its targets are skipped with ``install_hint``."""

    def __init__(self, proxy: str, searched: str, install_hint: str) -> None:
        self.proxy = proxy
        self.install_hint = install_hint
        super().__init__(f"{proxy} binary not found ({searched}); {install_hint}")


class ConfigRejected(HarnessError):
    """The proxy's own config checker refused the rendered config.

    ``file`` and ``line`` point at the user's template (the rendered copy has the
    same lines), ``detail`` holds the proxy's own message.
    """

    def __init__(
        self, proxy: str, detail: str, *, file: Path | None = None, line: int | None = None
    ) -> None:
        self.proxy = proxy
        self.file = file
        self.line = line
        self.reason = f"{proxy} rejected the config: {first_line(detail)}"
        super().__init__(f"{_where(file, line)}{self.reason}", detail=detail)

    def as_usage_error(self) -> UsageError:
        fix = "correct the config at that line" if self.line else "correct the config"
        if "\n" in self.detail.strip():
            fix += "; the proxy said:\n" + indent(self.detail)
        return UsageError(self.reason, file=self.file, line=self.line, fix=fix)


class LaunchError(HarnessError):
    """The proxy process exited early or never answered through its listener."""


def first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return text.strip()


def indent(text: str, prefix: str = "    ") -> str:
    return "\n".join(prefix + line for line in text.strip().splitlines())
