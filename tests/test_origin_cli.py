"""``proxytest origin``: the token, the prefix, the identity headers, the records API
(in process, real sockets), and the command line as a subprocess."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from email.message import Message
from pathlib import Path

import aiohttp
import pytest

from proxytest import cli
from proxytest.origin import Origin, OriginProcess, OriginRecord, health
from proxytest.origin.cli import TOKEN_ENV, is_loopback, parse_listen
from proxytest.origin.server import (
    CLOCK_HEADER,
    ORIGIN_HEADER,
    TOKEN_HEADER,
    TOKEN_REQUIRED,
    normalise_prefix,
)
from proxytest.routes import READY_PATH, RECORDS_PATH
from proxytest.tls import authority

TOKEN = "t0ken-for-the-tests_0123456789"


# -- in process: token ------------------------------------------------------------
@pytest.mark.asyncio
async def test_every_route_refuses_a_request_without_the_token() -> None:
    async with Origin(token=TOKEN) as origin, aiohttp.ClientSession() as session:
        for path in ("/sse?count=1", READY_PATH, RECORDS_PATH + "?probe=p", "/browser", "/nope"):
            for extra in ({}, {"params": {"token": "wrong"}}, {"headers": {TOKEN_HEADER: "x"}}):
                async with session.get(origin.url + path, **extra) as response:  # type: ignore[arg-type]
                    assert response.status == 401, (path, extra)
                    assert await response.text() == TOKEN_REQUIRED
                    assert response.headers[ORIGIN_HEADER] == origin.id
        # An upgrade too, before any 101.
        for path in ("/ws/echo", "/ws/push", "/ws/ping", "/ws/close"):
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await session.ws_connect(origin.url + path)
            assert refused.value.status == 401
        assert origin.records("") == []


@pytest.mark.asyncio
async def test_the_token_is_accepted_in_the_query_or_a_header_and_never_recorded() -> None:
    async with Origin(token=TOKEN) as origin, aiohttp.ClientSession() as session:
        by_query = {"params": {"token": TOKEN, "probe": "q", "count": "2", "interval_ms": "1"}}
        by_header = {
            "params": {"probe": "h", "count": "2", "interval_ms": "1"},
            "headers": {TOKEN_HEADER: TOKEN},
        }
        for how in (by_query, by_header):
            async with session.get(origin.url + "/sse", **how) as response:  # type: ignore[arg-type]
                assert response.status == 200
                assert response.headers["Content-Type"] == "text/event-stream"
                assert (await response.text()).count("event: tick") == 2
            ws = await session.ws_connect(origin.url + "/ws/echo", **how)  # type: ignore[arg-type]
            await ws.send_str("hello")
            assert (await ws.receive()).data == "hello"
            await ws.close()
        await origin.wait_for("h", lambda rs: len(rs) == 2 and rs[1].end, 5)
        for probe in ("q", "h"):
            records = origin.records(probe)
            assert [r.path for r in records] == ["/sse", "/ws/echo"]
            for record in records:
                assert "token" not in record.query
                assert record.header(TOKEN_HEADER) is None
                assert TOKEN not in json.dumps(record.to_json())


# -- in process: prefix, identity, records -------------------------------------------
@pytest.mark.parametrize(
    ("given", "prefix"), [("", ""), ("/", ""), ("/rt/", "/rt"), ("rt", "/rt"), ("/a/b", "/a/b")]
)
def test_prefixes_are_normalised(given: str, prefix: str) -> None:
    assert normalise_prefix(given) == prefix


@pytest.mark.parametrize("bad", ["/a?b", "/a#b", "/a//b", "/a/../b", "/a b", "/%2e"])
def test_what_is_no_path_prefix_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="not a path prefix"):
        normalise_prefix(bad)


@pytest.mark.asyncio
async def test_routes_are_served_under_the_prefix_only() -> None:
    async with Origin(prefix="/rt/") as origin, aiohttp.ClientSession() as session:
        assert origin.url.endswith("/rt")
        base = origin.url.removesuffix("/rt")
        async with session.get(base + "/rt" + READY_PATH) as response:
            assert (response.status, await response.text()) == (200, origin.id)
        async with session.get(base + READY_PATH) as response:
            assert response.status == 404
            assert response.headers[ORIGIN_HEADER] == origin.id
        async with session.get(base + "/rt/sse?count=1&probe=p") as response:
            assert response.status == 200
            await response.read()
        ws = await session.ws_connect(base + "/rt/ws/echo?probe=p")
        await ws.close()
        await origin.wait_for("p", lambda rs: len(rs) == 2 and rs[1].end, 5)
        # Records name the route, not the prefix: checks read them the same way.
        assert [r.path for r in origin.records("p")] == ["/sse", "/ws/echo"]


@pytest.mark.asyncio
async def test_the_ready_route_names_the_origin_and_its_clock() -> None:
    async with Origin(origin_id="edge-1") as origin, aiohttp.ClientSession() as session:
        before = time.monotonic()
        async with session.get(origin.url + READY_PATH) as response:
            after = time.monotonic()
            assert await response.text() == "edge-1"
            assert response.headers[ORIGIN_HEADER] == "edge-1"
            assert before <= float(response.headers[CLOCK_HEADER]) <= after
        for path in ("/sse?count=1", "/browser"):
            async with session.get(origin.url + path) as response:
                assert response.headers[ORIGIN_HEADER] == "edge-1"
        ws = await session.ws_connect(origin.url + "/ws/close")
        assert ws._response.headers[ORIGIN_HEADER] == "edge-1"
        await ws.receive()
        await ws.close()


@pytest.mark.asyncio
async def test_the_records_api_gives_back_what_the_origin_recorded() -> None:
    async with Origin(token=TOKEN) as origin, aiohttp.ClientSession() as session:
        auth = {TOKEN_HEADER: TOKEN}
        url = origin.url + "/sse?count=3&interval_ms=5&probe=r1&token=" + TOKEN
        async with session.get(url, headers={"Last-Event-ID": "4"}) as response:
            await response.read()
        ws = await session.ws_connect(
            origin.url + "/ws/ping?count=1&probe=r1", headers=auth, protocols=("b", "a")
        )
        await ws.ping(b"\x00\xffclient")
        await ws.send_bytes(b"\x01" * 10)
        await ws.close(code=4001, message=b"bye")
        await origin.wait_for("r1", lambda rs: len(rs) == 2 and rs[1].end, 5)
        async with session.get(origin.url + RECORDS_PATH + "?probe=r1", headers=auth) as response:
            assert response.status == 200
            assert response.content_type == "application/json"
            body = await response.json()
        assert body["origin"] == origin.id
        assert body["now"] <= time.monotonic()
        records = [OriginRecord.from_json(r) for r in body["records"]]
        assert records == origin.records("r1")
        assert records[0].last_event_id == "4" and records[0].events_sent == 3
        assert records[1].close_code == 4001 and records[1].pings_received == [b"\x00\xffclient"]
        # The records route records nothing itself, and wants a probe.
        assert len(origin.records("r1")) == 2
        async with session.get(origin.url + RECORDS_PATH, headers=auth) as response:
            assert response.status == 400


def test_a_record_survives_json_exactly() -> None:
    record = OriginRecord(
        probe="p",
        path="/ws/ping",
        query={"probe": "p", "x": "é"},
        headers=(("Host", "a"), ("Host", "b")),
        received_at=12345.678901234567,
        http_version="1.1",
        upgrade_requested=True,
        last_event_id=None,
        subprotocols_offered=("a", "b"),
        subprotocol_selected="a",
        upgraded=True,
        events_sent=7,
        messages_received=[("text", 3), ("binary", 0)],
        pings_received=[b"", bytes(range(256))],
        pongs_received=[(1.0000000000000002, b"\x80")],
        close_code=1000,
        close_reason="",
        finished_at=12346.1,
        end="complete",
    )
    data = json.loads(json.dumps(record.to_json()))
    assert OriginRecord.from_json(data) == record
    assert data["pings_received"][0] == "" and data["pongs_received"][0][1] == "gA=="


# -- the harness's own origin process still works -------------------------------------
@pytest.mark.asyncio
async def test_the_harness_origin_process_still_starts_with_host_and_port() -> None:
    async with OriginProcess() as origin, aiohttp.ClientSession() as session:
        response = await session.get(f"http://127.0.0.1:{origin.port}{READY_PATH}")
        assert (response.status, await response.text()) == (200, origin.id)
        response.release()


# -- the command line -----------------------------------------------------------------
def test_listen_values() -> None:
    assert parse_listen(":0").host == "127.0.0.1"
    assert (parse_listen("[::1]:8080").host, parse_listen("[::1]:8080").port) == ("::1", 8080)
    assert parse_listen("0.0.0.0:80").port == 80
    assert is_loopback("127.0.0.2") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("::") and not is_loopback("10.1.2.3")


def _free_busy_port() -> socket.socket:
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    return busy


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--listen", "nowhere"], "--listen"),
        (["--listen", "127.0.0.1:70000"], "--listen"),
        (["--listen", "::1:80"], "brackets"),
        (["--listen", "no-such-host.invalid:80"], "--listen"),
        (["--tls-cert", "/nonexistent/cert.pem", "--tls-key", "/nonexistent/k.pem"], "--tls-cert"),
        (["--tls-cert", "/etc/hostname"], "--tls-key"),
        (["--no-token", "--listen", "0.0.0.0:0"], "--no-token"),
        (["--no-token", "--token", "abc"], "--no-token"),
        (["--token", "has space"], "--token"),
        (["--prefix", "/a?b"], "--prefix"),
        (["--id", "two words"], "--id"),
    ],
)
def test_bad_input_is_exit_2_naming_the_option(
    argv: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["origin", *argv]) == 2
    err = capsys.readouterr().err
    assert named in err and "fix:" in err, err


def test_a_port_in_use_is_exit_2_naming_the_option(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with _free_busy_port() as busy:
        port = busy.getsockname()[1]
        assert cli.main(["origin", "--listen", f"127.0.0.1:{port}"]) == 2
    err = capsys.readouterr().err
    assert f"--listen 127.0.0.1:{port}" in err and "in use" in err and "fix:" in err
    # A bad TLS pair: files that are no certificate.
    (tmp_path / "c.pem").write_text("nope")
    argv = ["--tls-cert", str(tmp_path / "c.pem"), "--tls-key", str(tmp_path / "c.pem")]
    assert cli.main(["origin", *argv]) == 2
    assert "cannot be loaded" in capsys.readouterr().err


class Started:
    """A ``proxytest origin`` subprocess and the block it printed."""

    def __init__(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        banner = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                continue
            if line is None:
                break
            banner.append(line)
            if "SIGTERM stops it" in line:
                break
        self.banner = "".join(banner)

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def field(self, pattern: str) -> str:
        found = re.search(pattern, self.banner)
        assert found, self.banner
        return found.group(1)

    def stop(self) -> tuple[int, str]:
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise
        assert self.process.stderr is not None
        return code, self.process.stderr.read()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self.reader.join(timeout=5)
        for pipe in (self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()


@pytest.fixture
def started() -> Iterator[list[Started]]:
    every: list[Started] = []
    yield every
    for one in every:
        one.close()


def _get(
    url: str, *, headers: dict[str, str] | None = None, context: ssl.SSLContext | None = None
) -> tuple[int, str, Message]:
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, headers=headers or {}), timeout=10, context=context
        ) as response:
            return response.status, response.read().decode(), response.headers
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), exc.headers


def _listening_addresses(pid: int) -> set[str]:
    """Local addresses (hex, as /proc/net/tcp* writes them) of ``pid``'s listening sockets."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with_target = os.readlink(fd) if fd.is_symlink() else ""
        if with_target.startswith("socket:["):
            inodes.add(with_target[8:-1])
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            cols = row.split()
            if cols[3] == "0A" and cols[9] in inodes:  # 0A: LISTEN
                found.add(cols[1])
    return found


def _outward_address() -> str | None:
    """This machine's address towards the world, if it has one (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if is_loopback(address) or address == "0.0.0.0" else address


def test_the_command_prints_what_to_run_and_listens_on_loopback_only(
    started: list[Started],
) -> None:
    """Default --listen (127.0.0.1:8080): skipped if something else holds 8080."""
    origin = Started([sys.executable, "-m", "proxytest", "origin", "--id", "cli-test"])
    started.append(origin)
    if origin.process.poll() is not None or "listening on" not in origin.banner:
        code, err = origin.stop() if origin.process.poll() is None else (origin.process.wait(), "")
        if "in use" in (err or (origin.process.stderr.read() if origin.process.stderr else "")):
            pytest.skip("port 8080 is in use here: the default cannot be tested")
        pytest.fail(f"no banner: {origin.banner!r}")
    url = origin.field(r"listening on (http://\S+)")
    assert url == "http://127.0.0.1:8080/"
    token = origin.field(r"token:\s+(\S+) \(generated")
    assert len(token) >= 32
    assert origin.field(r"id:\s+(\S+)") == "cli-test"
    assert f"proxytest probe https://YOUR-PATH/ --origin-token {token}" in origin.banner
    assert f"proxytest probe http://127.0.0.1:8080/ --origin-token {token}" in origin.banner
    assert "beyond loopback" not in origin.banner
    assert _listening_addresses(origin.process.pid) == {"0100007F:1F90"}  # 127.0.0.1:8080
    outward = _outward_address()
    if outward is not None:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((outward, 8080), timeout=5).close()
    status, body, headers = _get(url + READY_PATH.lstrip("/") + "?token=" + token)
    assert (status, body, headers[ORIGIN_HEADER]) == (200, "cli-test", "cli-test")
    assert _get(url + READY_PATH.lstrip("/"))[:2] == (401, TOKEN_REQUIRED)
    code, _ = origin.stop()
    assert code == 0
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", 8080), timeout=5).close()


def test_a_token_from_the_environment_is_never_printed_nor_recorded(
    started: list[Started], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    origin = Started(
        [sys.executable, "-m", "proxytest.origin", "--listen", ":0", "--prefix", "/rt/"],
        env={TOKEN_ENV: TOKEN},
    )
    started.append(origin)
    url = origin.field(r"listening on (http://\S+)")
    assert url.startswith("http://127.0.0.1:") and url.endswith("/rt/")
    assert f'--origin-token "${TOKEN_ENV}"' in origin.banner
    auth = {TOKEN_HEADER: TOKEN}
    assert _get(url + "sse?count=2&interval_ms=1&probe=p&token=" + TOKEN)[0] == 200
    assert _get(url + "nothing-here", headers=auth)[0] == 404
    status, body, _ = _get(url + RECORDS_PATH.lstrip("/") + "?probe=p", headers=auth)
    assert status == 200 and json.loads(body)["records"][0]["path"] == "/sse"
    assert TOKEN not in body
    # The image's health check: the ready route with the token from the environment.
    ready = url + READY_PATH.lstrip("/")
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    assert health.main([ready]) == 1  # no token: 401
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    assert health.main([ready]) == 0
    assert health.main([url + "nothing-here"]) == 1
    assert "401" in capsys.readouterr().out
    code, err = origin.stop()
    assert code == 0
    assert TOKEN not in origin.banner + err


def test_beyond_loopback_only_when_asked_and_it_says_so(started: list[Started]) -> None:
    origin = Started([sys.executable, "-m", "proxytest", "origin", "--listen", "0.0.0.0:0"])
    started.append(origin)
    assert "note: listening beyond loopback on 0.0.0.0:0" in origin.banner
    url = origin.field(r"listening on (http://\S+)")
    port = int(url.rsplit(":", 1)[1].strip("/"))
    assert f"proxytest probe http://127.0.0.1:{port}/" in origin.banner
    assert origin.stop()[0] == 0


def test_tls_serves_https_with_the_given_certificate(
    started: list[Started], tmp_path: Path
) -> None:
    files = authority().write(tmp_path)
    origin = Started(
        [sys.executable, "-m", "proxytest", "origin", "--listen", "127.0.0.1:0",
         "--token", TOKEN, "--tls-cert", str(files.cert), "--tls-key", str(files.key)],
    )  # fmt: skip
    started.append(origin)
    url = origin.field(r"listening on (https://\S+)")
    context = authority().client_context()
    status, body, _ = _get(url + READY_PATH.lstrip("/") + "?token=" + TOKEN, context=context)
    assert status == 200 and body.startswith("origin-")

    async def echo_over_wss() -> str:
        async with aiohttp.ClientSession() as session:
            ws_url = url.replace("https", "wss") + "ws/echo?token=" + TOKEN
            async with session.ws_connect(ws_url, ssl=context) as ws:
                await ws.send_str("over tls")
                echoed = str((await ws.receive()).data)
        await asyncio.sleep(0.25)  # a TLS transport ends after close(): not with the loop
        return echoed

    assert asyncio.run(echo_over_wss()) == "over tls"
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        urllib.request.urlopen(url, timeout=10, context=ssl.create_default_context())
    assert origin.stop()[0] == 0
