"""Files a config includes, found beside it (nginx ``include``, Caddy ``import``).

A config brought from its production host includes files by the host's paths
(``/etc/nginx/conf.d/*.conf``) or relative to itself (``mime.types``). The
files found in the config's folder are rendered into the run dir at the same
relative path, placeholders and neutralising included (templates.load_config);
an absolute path that is not on this machine is looked for there too, taking
the config's folder for a copy of the deployed one.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from ..errors import TemplateError

__all__ = ["deployed_beside", "files_beside", "is_glob", "on_this_machine", "relative_beside"]


def is_glob(path: str) -> bool:
    return any(ch in path for ch in "*?[")


def on_this_machine(path: str) -> bool:
    """Whether an absolute path (or glob) names a file here."""
    if is_glob(path):
        return any(p.is_file() for p in Path("/").glob(path.lstrip("/")))
    return Path(path).is_file()


def files_beside(home: Path, relative: PurePosixPath) -> list[PurePosixPath]:
    """The files ``relative`` (a path or a glob) names in ``home``, relative to it."""
    if not is_glob(str(relative)):
        return [relative] if (home / relative).is_file() else []
    return sorted(
        PurePosixPath(p.relative_to(home).as_posix())
        for p in home.glob(str(relative))
        if p.is_file()
    )


def deployed_beside(home: Path, path: PurePosixPath) -> PurePosixPath | None:
    """Where an absolute path of the deployed host sits in ``home``, if it does.

    ``/etc/nginx/conf.d/*.conf`` is found as ``conf.d/*.conf`` (after ``etc/nginx/…``
    and ``nginx/conf.d/…``), ``/etc/nginx/mime.types`` as ``mime.types``. A bare
    glob (``*.conf``) would match the config itself: it is not tried.
    """
    parts = path.parts[1:]
    for first in range(len(parts)):
        candidate = PurePosixPath(*parts[first:])
        if len(candidate.parts) == 1 and is_glob(str(candidate)):
            continue
        if files_beside(home, candidate):
            return candidate
    return None


def relative_beside(
    home: Path, relative: PurePosixPath, *, what: str, source: Path, line: int
) -> list[PurePosixPath]:
    """The files a relative include names in ``home``; TemplateError if none or outside.

    ``what`` is the line as the user wrote it (``include mime.types;``), for messages.
    """
    if relative.parts and relative.parts[0] == "..":
        raise TemplateError(
            f"`{what}` reads a file outside the config's folder ({home})",
            file=source,
            line=line,
            fix="copy the file beside the config (or below its folder) and include it from "
            "there: proxytest copies what a config includes from its folder into the run dir",
        )
    matches = files_beside(home, relative)
    if not matches and not is_glob(str(relative)):
        raise TemplateError(
            f"`{what}`: no such file beside the config ({home / relative})",
            file=source,
            line=line,
            fix="put it beside the config (proxytest copies what a config includes from its "
            "folder into the run dir), or remove the line",
        )
    return matches
