"""Placeholder rendering and its errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxytest.adapters import ADAPTERS
from proxytest.errors import TemplateError, UsageError
from proxytest.options import RunOptions, check_targets
from proxytest.templates import (
    Placeholders,
    backend_count,
    load_config,
    read_template,
    render_config,
    render_files,
    render_text,
    require_placeholders,
)

VALUES = Placeholders("127.0.0.1", 8080, "127.0.0.1", 9090, Path("/tmp/run")).as_mapping()


def test_every_placeholder_with_and_without_spaces() -> None:
    text = "{{ listen_host }}:{{listen_port}} -> {{  upstream_host}}:{{upstream_port }} {{run_dir}}"
    assert render_text(text, VALUES, source="x") == "127.0.0.1:8080 -> 127.0.0.1:9090 /tmp/run"


def test_unknown_placeholder_names_file_line_and_the_valid_names() -> None:
    text = "a\nb\nlisten {{ listen_port }};\nproxy {{ upstream_url }};\n"
    with pytest.raises(TemplateError) as info:
        render_text(text, VALUES, source="site.conf")
    err = info.value
    assert (err.file, err.line) == ("site.conf", 4)
    assert "{{ upstream_url }}" in str(err)
    assert "{{ upstream_port }}" in (err.fix or "")
    assert str(err).startswith("site.conf:4: unknown placeholder")


def test_malformed_placeholder_is_an_error_too() -> None:
    with pytest.raises(TemplateError) as info:
        render_text("x {{ listen-port }}", VALUES, source="f")
    assert info.value.line == 1


def test_rendering_keeps_line_numbers() -> None:
    text = "one {{ run_dir }}\ntwo\nthree {{ listen_port }}\n"
    assert render_text(text, VALUES, source="f").count("\n") == text.count("\n")


def test_render_files_writes_each_under_its_base_name(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "default.yaml").write_text("file: {{ run_dir }}/default.dynamic.yaml\n")
    (src / "default.dynamic.yaml").write_text(
        "url: http://{{ upstream_host }}:{{ upstream_port }}\n"
    )
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    ph = Placeholders("127.0.0.1", 1234, "127.0.0.1", 4321, run_dir)
    files = render_files([src / "default.yaml", src / "default.dynamic.yaml"], ph)
    assert [f.name for f in files] == ["default.yaml", "default.dynamic.yaml"]
    assert files[0].read_text() == f"file: {run_dir}/default.dynamic.yaml\n"
    assert files[1].read_text() == "url: http://127.0.0.1:4321\n"


def test_two_files_with_one_base_name_are_refused(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for d in ("a", "b"):
        (tmp_path / d / "x.conf").write_text("")
    ph = Placeholders("127.0.0.1", 1, "127.0.0.1", 2, tmp_path)
    with pytest.raises(TemplateError, match="share the base name"):
        render_files([tmp_path / "a" / "x.conf", tmp_path / "b" / "x.conf"], ph)


def test_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    ph = Placeholders("127.0.0.1", 1, "127.0.0.1", 2, tmp_path)
    with pytest.raises(UsageError, match="not found"):
        render_files([tmp_path / "nope.conf"], ph)


def test_newline_in_a_value_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="newline"):
        Placeholders("127.0.0.1", 1, "127.0.0.1", 2, tmp_path / "a\nb").as_mapping()


def test_shipped_templates_use_only_known_placeholders() -> None:
    from proxytest.matrix import discover_setup, setups_of

    root = Path(__file__).resolve().parents[1] / "proxies"
    specs = []
    for proxy_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for setup in setups_of(root, proxy_dir.name):
            specs.append(discover_setup(root, proxy_dir.name, setup))
    assert len(specs) >= 10
    for files in specs:
        # the lb-* setups front two backends: rendered with both
        more = (("127.0.0.1", 9091),) * (backend_count(load_config(files)) - 1)
        values = Placeholders("127.0.0.1", 8080, "127.0.0.1", 9090, Path("/tmp/run"), more)
        for path in files:  # raises on a bad placeholder
            render_text(path.read_text(), values.as_mapping(), source=path)
    assert sum(backend_count(load_config(files)) == 2 for files in specs) == 10


def test_check_targets_fails_before_anything_starts(tmp_path: Path) -> None:
    from proxytest.matrix import TargetSpec

    bad = tmp_path / "bad.conf"
    bad.write_text("listen {{ listen_port }};\nroot {{ docroot }};\n")
    with pytest.raises(TemplateError) as info:
        check_targets([TargetSpec("nginx", "bad", (bad,))], RunOptions())
    assert (info.value.file, info.value.line) == (bad, 2)


def test_a_file_that_is_not_utf8_names_the_line_of_its_first_bad_byte(tmp_path: Path) -> None:
    config = tmp_path / "site.conf"
    config.write_bytes("events {}\n# ok: café\n".encode() + b"# caf\xe9\n")
    with pytest.raises(TemplateError) as info:
        read_template(config)
    assert (info.value.file, info.value.line) == (config, 3)
    assert "0xe9" in info.value.problem
    assert "UTF-8" in (info.value.fix or "")


NGINX_MAIN = "events {}\nhttp {\n    include conf.d/*.conf;\n}\n"
NGINX_SITE = (
    "server {\n    listen {{ listen_host }}:{{ listen_port }};\n"
    "    location / { proxy_pass http://{{ upstream_host }}:{{ upstream_port }}; }\n}\n"
)


def test_placeholders_may_be_in_any_file_of_the_config_even_an_included_one(
    tmp_path: Path,
) -> None:
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "nginx.conf").write_text(NGINX_MAIN)
    (tmp_path / "conf.d" / "site.conf").write_text(NGINX_SITE)
    template = load_config([tmp_path / "nginx.conf"], ADAPTERS["nginx"])
    require_placeholders(template, ADAPTERS["nginx"])  # in conf.d/site.conf: fine
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    config = render_config(template, Placeholders("127.0.0.1", 1234, "127.0.0.1", 4321, run_dir))
    rendered = run_dir / "conf.d" / "site.conf"
    assert config.companions == ((rendered, tmp_path / "conf.d" / "site.conf"),)
    assert "listen 127.0.0.1:1234;" in rendered.read_text()
    # a message about the rendered include points at the user's file and line
    output = f'[emerg] 1#1: unknown directive "lisen" in {rendered}:2\n'
    err = ADAPTERS["nginx"].rejected(config, output)
    assert (err.file, err.line) == (tmp_path / "conf.d" / "site.conf", 2)


@pytest.mark.parametrize(
    ("static", "dynamic", "missing"),
    [
        ('address: ":{{ listen_port }}"\n', "url: http://{{ upstream_host }}:1\n", "upstream"),
        ("# {{ listen_port }} (a comment)\n", "url: x:{{ upstream_port }}\n", "listen"),
        ('address: ":{{ listen_port }}"\n', "url: x:{{ upstream_port }}\n", None),
    ],
)
def test_a_config_must_say_where_it_listens_and_where_the_origin_is(
    tmp_path: Path, static: str, dynamic: str, missing: str | None
) -> None:
    files = [tmp_path / "static.yml", tmp_path / "routes.yml"]
    files[0].write_text(static)
    files[1].write_text(dynamic)
    template = load_config(files, ADAPTERS["traefik"])
    if missing is None:
        require_placeholders(template, ADAPTERS["traefik"])
        return
    with pytest.raises(TemplateError) as info:
        require_placeholders(template, ADAPTERS["traefik"])
    assert info.value.file == files[0]
    assert f"no {{{{ {missing}_port }}}} placeholder" in info.value.problem
    assert "in none of its files" in info.value.problem
    fix = info.value.fix or ""
    assert "static.yml" in fix and "routes.yml" in fix  # any one of them will do
    assert ("entry point" if missing == "listen" else "service's server") in fix


def test_check_targets_refuses_a_config_without_a_listen_placeholder(tmp_path: Path) -> None:
    from proxytest.matrix import TargetSpec

    config = tmp_path / "haproxy.cfg"
    config.write_text("frontend web\n    bind :80\nbackend b\n    server s {{ upstream_host }}:1\n")
    with pytest.raises(TemplateError, match=r"no \{\{ listen_port \}\}") as info:
        check_targets([TargetSpec("haproxy", "x", (config,))], RunOptions())
    assert "`bind {{ listen_host }}:{{ listen_port }}`" in (info.value.fix or "")


def test_tls_placeholders_name_the_run_certificate_written_into_the_run_dir(
    tmp_path: Path,
) -> None:
    import ssl

    from proxytest.adapters import ADAPTERS
    from proxytest.templates import load_config, render_config
    from proxytest.tls import authority

    source = tmp_path / "src" / "tls.conf"
    source.parent.mkdir()
    source.write_text(
        "listen {{ listen_port }} ssl;  # {{ tls_ca }}\n"
        "ssl_certificate {{tls_cert}}; ssl_certificate_key {{ tls_key }};\n"
        "crt {{ tls_pem }}; proxy_pass {{ upstream_port }};\n"
    )
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    template = load_config([source], ADAPTERS["nginx"])
    rendered = render_config(template, Placeholders("127.0.0.1", 1, "127.0.0.1", 2, run_dir))
    assert rendered.tls
    text = rendered.main.read_text()
    paths = [Path(w.rstrip(";")) for w in text.split() if w.startswith(str(run_dir))]
    assert {p.name for p in paths} == {"ca.pem", "cert.pem", "key.pem", "cert+key.pem"}
    for path in paths:
        assert path.parent == run_dir / "tls"
        assert path.stat().st_mode & 0o777 == 0o600
    # the certificate is valid for the loopback names, signed by the run's CA
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(run_dir / "tls" / "cert+key.pem")
    client = authority().client_context()
    assert client.verify_mode == ssl.CERT_REQUIRED and client.check_hostname
    assert b"BEGIN CERTIFICATE" in (run_dir / "tls" / "ca.pem").read_bytes()


def test_a_tls_placeholder_only_in_a_comment_is_not_a_tls_listener(tmp_path: Path) -> None:
    from proxytest.templates import load_config, uses_tls

    source = tmp_path / "plain.conf"
    source.write_text("listen {{ listen_port }};\n# ssl_certificate {{ tls_cert }};\n")
    assert not uses_tls(load_config([source]))
    source.write_text("listen {{ listen_port }} ssl;\nssl_certificate {{ tls_cert }};\n")
    assert uses_tls(load_config([source]))


# -- several backends: numbered placeholders ------------------------------------------


def _config(tmp_path: Path, *texts: str) -> list[Path]:
    files = []
    for n, text in enumerate(texts):
        path = tmp_path / f"f{n}.cfg"
        path.write_text(text)
        files.append(path)
    return files


def test_numbered_placeholders_render_each_backend(tmp_path: Path) -> None:
    ph = Placeholders(
        "127.0.0.1", 1, "127.0.0.1", 2001, Path("/tmp/run"), (("10.0.0.2", 2002), ("h3", 2003))
    )
    text = (
        "{{ upstream_host }}:{{ upstream_port }} {{ upstream_host_1 }}:{{upstream_port_1}} "
        "{{ upstream_host_2 }}:{{ upstream_port_2 }} {{ upstream_host_3 }}:{{ upstream_port_3 }}"
    )
    assert render_text(text, ph.as_mapping(), source="x") == (
        "127.0.0.1:2001 127.0.0.1:2001 10.0.0.2:2002 h3:2003"
    )


@pytest.mark.parametrize(
    ("texts", "count"),
    [
        (("listen {{ listen_port }} {{ upstream_port }}",), 1),
        (("{{ listen_port }} {{ upstream_port_1 }}",), 1),  # backend 1, numbered
        (("{{ listen_port }} {{ upstream_port }}\n{{ upstream_port_2 }}",), 2),
        # over all files (Traefik: the dynamic file names the servers)
        (
            (
                "{{ listen_port }}",
                "{{ upstream_port_1 }}\n{{ upstream_port_2 }} {{ upstream_port_3 }}",
            ),
            3,
        ),
        # a backend in a comment only does not count
        (("{{ listen_port }} {{ upstream_port }}\n# {{ upstream_port_2 }}",), 1),
    ],
)
def test_the_highest_number_outside_comments_is_how_many_backends(
    tmp_path: Path, texts: tuple[str, ...], count: int
) -> None:
    template = load_config(_config(tmp_path, *texts))
    require_placeholders(template, ADAPTERS["haproxy"])
    assert backend_count(template) == count


@pytest.mark.parametrize(
    ("text", "line", "says"),
    [
        ("{{ listen_port }}\n{{ upstream_port_0 }}", 2, "with N = '0' names none"),
        ("{{ listen_port }}\n\n{{ upstream_host_17 }}", 3, "numbered 1 to 16"),
        ("{{ listen_port }}\n{{ upstream_port_02 }}", 2, "N = '02'"),
        ("{{ listen_port }}\n{{ upstream_port_two }}", 2, "N = 'two'"),
        # an impossible number is refused in a comment too: it is a typo either way
        ("{{ listen_port }} {{ upstream_port }}\n# {{ upstream_port_99 }}", 2, "N = '99'"),
        # a gap: backend 3 without backend 2's port
        (
            "{{ listen_port }} {{ upstream_port }}\n\n{{ upstream_port_3 }}",
            3,
            "no {{ upstream_port_2 }}",
        ),
        # a host without its port
        (
            "{{ listen_port }} {{ upstream_port }}\n{{ upstream_host_2 }}:80",
            2,
            "no {{ upstream_port_2 }}",
        ),
    ],
)
def test_numbered_placeholders_that_name_no_backend_are_errors_at_file_and_line(
    tmp_path: Path, text: str, line: int, says: str
) -> None:
    files = _config(tmp_path, text)
    template = load_config(files)
    with pytest.raises(TemplateError) as info:
        backend_count(template)
    assert (info.value.file, info.value.line) == (files[0], line)
    assert says in info.value.problem
    assert info.value.fix
    with pytest.raises(TemplateError):  # check_targets' road
        require_placeholders(template, ADAPTERS["haproxy"])


def test_the_unknown_placeholder_error_lists_the_numbered_forms() -> None:
    with pytest.raises(TemplateError) as info:
        render_text("{{ upstream_url }}", VALUES, source="f")
    assert "{{ upstream_host_N }}, {{ upstream_port_N }}" in (info.value.fix or "")


def test_a_backend_beyond_the_config_s_count_in_a_comment_is_named(tmp_path: Path) -> None:
    with pytest.raises(TemplateError) as info:
        render_text("# {{ upstream_port_2 }}", VALUES, source="f")
    assert "names backend 2, but this config fronts 1" in info.value.problem


def test_check_targets_accepts_a_two_backend_config(tmp_path: Path) -> None:
    from proxytest.matrix import TargetSpec

    conf = tmp_path / "lb.cfg"
    conf.write_text(
        "frontend f\n  bind {{ listen_host }}:{{ listen_port }}\n  default_backend b\n"
        "backend b\n  server s1 {{ upstream_host_1 }}:{{ upstream_port_1 }}\n"
        "  server s2 {{ upstream_host_2 }}:{{ upstream_port_2 }}\n"
    )
    target = TargetSpec(proxy="haproxy", setup="lb", configs=(conf,))
    check_targets([target], RunOptions.from_matrix())
