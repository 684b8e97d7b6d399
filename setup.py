"""What pyproject.toml cannot say: the starter matrix and setups go into the wheel.

The repository's top-level ``matrix.yaml`` and ``proxies/`` are the source (people
edit them there, and the suite runs them). A wheel carries a copy of them as
``proxytest/_starter/``, made here when the wheel is built, so nothing is
committed twice. An editable install (``pip install -e .``, scripts/dev.sh) copies
nothing: ``proxytest/starter.py`` then finds the repository's own folders, so an
edit shows without reinstalling. MANIFEST.in puts both into an sdist, so a wheel
built from the sdist has them too.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
STARTER = ("matrix.yaml", "proxies")  # relative to the repository, copied as they are
PACKAGED = Path("proxytest", "_starter")  # where they land, relative to the build folder


class BuildWithStarter(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        target = Path(self.build_lib) / PACKAGED
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        for name in STARTER:
            source = HERE / name
            if not source.exists():
                raise SystemExit(f"setup.py: {source} is missing; the wheel needs it")
            if source.is_dir():
                shutil.copytree(
                    source, target / name, ignore=shutil.ignore_patterns("__pycache__", ".*")
                )
            else:
                shutil.copy2(source, target / name)


setup(cmdclass={"build_py": BuildWithStarter})
