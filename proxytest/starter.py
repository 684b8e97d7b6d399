"""The default matrix and setups that ship with proxytest, and ``proxytest init``.

The repository's top-level ``matrix.yaml`` and ``proxies/`` are the source. A
wheel carries a copy of them as ``proxytest/_starter/`` (setup.py makes it when
the wheel is built); a clone, or an editable install of one, has no copy and
reads the repository's own folders. Either way the matrix's ``proxies_dir`` is
relative to the matrix file, so the packaged matrix finds the packaged setups.

``copy_starter(folder)`` writes both into a folder for a person to edit; it
refuses to overwrite a file unless told to, and leaves nothing half-written.
"""

from __future__ import annotations

import contextlib
import shutil
from importlib import resources
from pathlib import Path

from .errors import UsageError

__all__ = ["copy_starter", "starter_dir", "starter_matrix", "starter_proxies"]

MATRIX, PROXIES = "matrix.yaml", "proxies"
_REINSTALL = (
    "reinstall proxytest from its wheel (pip install proxytest), or run from a clone "
    "of its repository"
)


def starter_dir() -> Path:
    """The folder holding the starter ``matrix.yaml`` and ``proxies/``."""
    packaged = resources.files(__package__ or "proxytest").joinpath("_starter")
    if isinstance(packaged, Path) and (packaged / MATRIX).is_file():
        return packaged
    clone = Path(__file__).resolve().parent.parent  # the repository, when run from one
    if (clone / "pyproject.toml").is_file() and (clone / MATRIX).is_file():
        return clone
    raise UsageError(
        "the default matrix that ships with proxytest is missing from this installation",
        file=packaged if isinstance(packaged, Path) else None,
        fix=_REINSTALL,
    )


def starter_matrix() -> Path:
    """The default matrix file that ships with proxytest."""
    return starter_dir() / MATRIX


def starter_proxies() -> Path:
    """The folder of setups (``<proxy>/<setup>.*``) that ships with proxytest."""
    return starter_dir() / PROXIES


def _starter_files() -> list[Path]:
    """The starter's files, relative to its folder: the matrix, then every setup."""
    root = starter_dir()
    setups = sorted(
        p.relative_to(root)
        for p in (root / PROXIES).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and not p.name.startswith(".")
    )
    return [Path(MATRIX), *setups]


def copy_starter(folder: Path, *, force: bool = False) -> list[Path]:
    """Copy the starter matrix and setups into ``folder``; return the files written.

    Without ``force`` an existing file is a ``UsageError`` before anything is
    written. A failure part-way removes what this call wrote and created.
    """
    if folder.exists() and not folder.is_dir():
        raise UsageError("is a file, not a folder", file=folder, fix="name a folder")
    root = starter_dir()
    if folder.resolve() == root.resolve():
        raise UsageError(
            "is where proxytest's own default matrix and setups are",
            file=folder,
            fix="choose another folder: proxytest init DIR",
        )
    files = _starter_files()
    if not force:
        present = [folder / f for f in files if (folder / f).exists() or (folder / f).is_symlink()]
        if present:
            more = f" (and {len(present) - 1} more)" if len(present) > 1 else ""
            raise UsageError(
                f"already exists{more}; proxytest init does not overwrite files",
                file=present[0],
                fix="choose another folder (proxytest init DIR), remove the file, "
                "or pass --force to overwrite",
            )
    written: list[Path] = []
    created: list[Path] = []
    try:
        for rel in files:
            target = folder / rel
            missing = [p for p in (target.parent, *target.parent.parents) if not p.exists()]
            target.parent.mkdir(parents=True, exist_ok=True)
            created.extend(reversed(missing))
            if target.is_dir() and not target.is_symlink():
                raise UsageError(
                    "is a folder where proxytest init writes a file",
                    file=target,
                    fix="choose another folder (proxytest init DIR) or remove it",
                )
            existed = target.exists()
            shutil.copyfile(root / rel, target)
            if not existed:
                written.append(target)
    except BaseException as exc:
        for path in written:
            path.unlink(missing_ok=True)
        for path in reversed(created):
            with contextlib.suppress(OSError):  # a folder that is not empty stays
                path.rmdir()
        if isinstance(exc, OSError):
            raise UsageError(
                f"cannot write the starter files: {exc.strerror or exc}",
                file=exc.filename or folder,
                fix="choose a folder you can write to",
            ) from None
        raise
    return [folder / f for f in files]
