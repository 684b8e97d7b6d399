"""Build the origin's image (deploy/origin/Dockerfile) where no registry answers.

    .venv/bin/python scripts/origin-image.py [--tag TAG]

The Dockerfile starts from python:3.11-slim and pip-installs proxytest's wheel.
Without a registry, this script first makes a stand-in base image from the
interpreter running it, as scripts/docker-images.py makes the proxies' images
from their installed binaries: ``FROM scratch`` with the interpreter, its
standard library (no tests, no tkinter) and the shared libraries that ``ldd``
lists, at python:3.11-slim's paths (``/usr/local/bin/python``); the installed
distributions proxytest depends on (and pip) in its site-packages; and
``/bin/sh`` (dash) for the Dockerfile's RUN. It then builds the Dockerfile
unchanged, with ``BASE`` set to that image and ``PIP_NO_INDEX=1`` (the
dependencies are in the base already). The base is tagged
``proxytest-local/python:<version>-<hash of what went in>`` and kept.

Prints the image's tag. Tests load this file and call ``build_origin_image(client)``.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DOCKERFILE = ROOT / "deploy" / "origin" / "Dockerfile"
PREFIX = "/usr/local"  # python:3.11-slim's
STDLIB_SKIP = {"site-packages", "test", "idlelib", "tkinter", "turtledemo", "ensurepip",
               "lib2to3", "__pycache__", "config-3.11-x86_64-linux-gnu"}  # fmt: skip


def _images_module():
    spec = importlib.util.spec_from_file_location("docker_images", HERE / "docker-images.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _requirements(name: str, seen: set[str]) -> None:
    """``name`` and every distribution it requires (no extras), by installed metadata."""
    key = re.sub(r"[-_.]+", "-", name).lower()
    if key in seen:
        return
    seen.add(key)
    for req in importlib.metadata.requires(name) or ():
        if "extra ==" in req:
            continue
        marker_free = req.split(";", 1)
        if len(marker_free) == 2 and not _marker_holds(marker_free[1]):
            continue
        dep = re.split(r"[\s<>=!~\[(;]", marker_free[0].strip(), maxsplit=1)[0]
        _requirements(dep, seen)


def _marker_holds(marker: str) -> bool:
    from packaging.markers import Marker

    return bool(Marker(marker).evaluate({"extra": ""}))


def _copy_distribution(name: str, site: Path) -> None:
    dist = importlib.metadata.distribution(name)
    base = Path(str(dist.locate_file("")))
    for file in dist.files or ():
        if file.parts[0] == ".." or "__pycache__" in file.parts:
            continue  # console scripts (pip writes its own) and bytecode
        source = base / file
        if source.is_file():
            dest = site / file
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest)


def make_base_context(ctx: Path) -> None:
    """Fill ``ctx`` with a Dockerfile and rootfs/ of the running interpreter."""
    images = _images_module()
    root = ctx / "rootfs"
    local = root / PREFIX.lstrip("/")
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    base = Path(sys.base_prefix)
    (local / "bin").mkdir(parents=True)
    shutil.copy2(base / "bin" / f"python{version}", local / "bin" / f"python{version}")
    for alias in ("python", "python3"):
        os.symlink(f"python{version}", local / "bin" / alias)
    libpython = Path(sysconfig.get_config_var("LIBDIR") or "") / f"libpython{version}.so.1.0"
    (local / "lib").mkdir()
    if libpython.is_file():
        shutil.copy2(libpython, local / "lib" / libpython.name)
    stdlib = base / "lib" / f"python{version}"
    shutil.copytree(
        stdlib,
        local / "lib" / f"python{version}",
        ignore=lambda folder, names: [n for n in names if n in STDLIB_SKIP],
    )
    site = local / "lib" / f"python{version}" / "site-packages"
    site.mkdir()
    wanted: set[str] = set()
    _requirements("proxytest", wanted)
    wanted.discard("proxytest")
    for name in sorted(wanted | {"pip"}):
        _copy_distribution(name, site)
    # Shared libraries of the interpreter and of every extension module, and dash.
    seen: set[str] = set()
    sh = os.path.realpath("/bin/sh")
    binaries = [base / "bin" / f"python{version}", Path(sh)]
    binaries += [p for p in local.rglob("*.so*") if p.is_file()]
    for binary in binaries:
        for lib in images.shared_libraries(binary):
            if "libpython" not in lib:
                images.stage(lib, root, seen)
    (root / "bin").mkdir(exist_ok=True)
    shutil.copy2(sh, root / "bin" / "sh")
    etc = root / "etc"
    etc.mkdir(exist_ok=True)
    (etc / "passwd").write_text(images.PASSWD)
    (etc / "group").write_text(images.GROUP)
    (etc / "nsswitch.conf").write_text(images.NSSWITCH)
    if os.path.isfile(images.CA_BUNDLE):
        bundle = root / images.CA_BUNDLE.lstrip("/")
        bundle.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(images.CA_BUNDLE, bundle)
    for tmp in ("tmp", "var/tmp"):
        (root / tmp).mkdir(parents=True, exist_ok=True)
        os.chmod(root / tmp, 0o1777)
    (ctx / "Dockerfile").write_text(
        "FROM scratch\nCOPY rootfs/ /\n"
        f"ENV PATH={PREFIX}/bin:/usr/bin:/bin LD_LIBRARY_PATH={PREFIX}/lib LANG=C.UTF-8\n"
        'CMD ["python3"]\n'
    )


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        h.update(str(path.relative_to(folder)).encode())
        if path.is_file() and not path.is_symlink():
            h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()[:12]


def build_base(client) -> str:
    """The stand-in for python:3.11-slim, built once per content; its tag."""
    import docker.errors

    images = _images_module()
    with tempfile.TemporaryDirectory(prefix="proxytest-python-base-") as tmp:
        make_base_context(Path(tmp))
        tag = f"{images.REPOSITORY}/python:{sys.version.split()[0]}-{_digest(Path(tmp))}"
        try:
            client.images.get(tag)
        except docker.errors.ImageNotFound:
            images._build(client, Path(tmp), tag, {images.LABEL: "1"}, False)
    return tag


def build_origin_image(client, tag: str = "proxytest-local/origin:test") -> str:
    """deploy/origin/Dockerfile on the stand-in base, with this checkout's wheel; ``tag``."""
    images = _images_module()
    base = build_base(client)
    with tempfile.TemporaryDirectory(prefix="proxytest-origin-image-") as tmp:
        ctx = Path(tmp)
        shutil.copy2(DOCKERFILE, ctx / "Dockerfile")
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(ctx / "wheels"),
             str(ROOT)],
            check=True, capture_output=True, timeout=600,
        )  # fmt: skip
        log: list[str] = []
        for chunk in client.api.build(
            path=str(ctx), tag=tag, rm=True, forcerm=True, pull=False, decode=True,
            buildargs={"BASE": base, "PIP_NO_INDEX": "1"}, labels={images.LABEL: "1"},
        ):  # fmt: skip
            if "error" in chunk:
                detail = chunk.get("errorDetail", {}).get("message") or chunk["error"]
                raise images.BuildFailed(f"docker build: {detail.strip()}\n{''.join(log)[-2000:]}")
            log.append(chunk.get("stream", ""))
    return tag


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tag", default="proxytest-local/origin:test")
    args = parser.parse_args(argv)
    import docker

    print(build_origin_image(docker.from_env(), args.tag))
    return 0


if __name__ == "__main__":
    sys.exit(main())
