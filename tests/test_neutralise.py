"""Adapter.neutralise on text: what each proxy's deployed lines become, lines kept.

Every neutraliser keeps the file's lines (a proxy's message about the rendered
copy points at the user's line), leaves comments and quoted strings alone, and
refuses what it cannot neutralise with the file, the line and a fix. The configs
under proxies/ are written for proxytest and need nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from proxytest.adapters import ADAPTERS
from proxytest.adapters.base import Neutralised
from proxytest.errors import TemplateError
from proxytest.matrix import discover_setup, setups_of

from .conftest import ROOT


def neutralise(proxy: str, text: str, source: Path, *others: Path) -> Neutralised:
    done = ADAPTERS[proxy].neutralise(text, source, (source, *others))
    assert done.text.count("\n") == text.count("\n"), "a neutraliser must keep every line"
    return done


def lines(done: Neutralised) -> dict[int, str]:
    return dict(enumerate(done.text.splitlines(), 1))


def noticed(done: Neutralised) -> list[int]:
    return [n.line for n in done.notices]


@pytest.mark.parametrize("proxy", sorted(ADAPTERS))
def test_shipped_configs_need_nothing(proxy: str) -> None:
    root = ROOT / "proxies"
    for setup in setups_of(root, proxy):
        files = discover_setup(root, proxy, setup)
        for path in files:
            text = path.read_text()
            done = ADAPTERS[proxy].neutralise(text, path, files)
            assert (done.text, done.notices, done.companions) == (text, (), ())


# -- nginx ---------------------------------------------------------------------------
NGINX = """\
user nginx;
worker_processes auto;
daemon off;
pid /run/nginx.pid;
error_log /var/log/nginx/error.log warn;
# daemon off; pid /run/x.pid;   (a comment)
events { worker_connections 64; }
http {
    log_format main '"daemon off;" $remote_addr ${host}x';
    access_log /var/log/nginx/access.log main;
    access_log off;
    proxy_temp_path /var/cache/nginx/proxy_temp;
    error_log stderr;
    server {
        listen {{ listen_host }}:{{ listen_port }}; access_log /srv/site.log;
        error_log
            /var/log/nginx/site.error.log
            info;
        location / { proxy_pass http://{{ upstream_host }}:{{ upstream_port }}; }
    }
}
"""


def test_nginx_deployed_lines(tmp_path: Path) -> None:
    done = neutralise("nginx", NGINX, tmp_path / "site.conf")
    got = lines(done)
    assert got[1] == "# user nginx;"
    assert got[3] == "# daemon off;"
    assert got[4] == "pid {{ run_dir }}/nginx.pid;"
    assert got[5] == "error_log stderr warn;"
    assert got[6] == "# daemon off; pid /run/x.pid;   (a comment)"  # untouched
    assert got[9] == NGINX.splitlines()[8]  # a quoted string is not a directive
    assert got[10] == "    access_log {{ run_dir }}/access.log main;"
    assert got[11] == "    access_log off;"
    assert got[12] == "    proxy_temp_path {{ run_dir }}/proxy_temp;"
    assert got[13] == "    error_log stderr;"
    # two directives on one line: only the path changes
    assert got[15].endswith("access_log {{ run_dir }}/site.log;")
    assert got[17] == "            stderr"  # a directive over three lines
    assert noticed(done) == [1, 3, 4, 5, 10, 12, 15, 16]
    assert str(done.notices[1]) == (
        f"{tmp_path / 'site.conf'}:3: daemon off; removed "
        "(proxytest runs nginx in the foreground itself)"
    )


def test_nginx_directive_sharing_its_line_is_blanked_not_commented(tmp_path: Path) -> None:
    text = "daemon off; worker_processes 1;\nevents {}\n"
    done = neutralise("nginx", text, tmp_path / "a.conf")
    assert done.text == "            worker_processes 1;\nevents {}\n"
    assert noticed(done) == [1]


def test_nginx_includes_beside_absent_and_mapped(tmp_path: Path) -> None:
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "mime.types").write_text("types {}\n")
    (tmp_path / "conf.d" / "a.conf").write_text("")
    (tmp_path / "conf.d" / "b.conf").write_text("")
    text = (
        "include mime.types;\n"
        "include /etc/nginx-not-here/proxy_params;\n"
        "include /etc/nginx-not-here/conf.d/*.conf;\n"
        "include /etc/nginx-not-here/modules-enabled/*.conf;\n"
        "include ./conf.d/*.conf;\n"
    )
    done = neutralise("nginx", text, tmp_path / "nginx.conf")
    got = lines(done)
    assert got[1] == "include mime.types;"  # beside: copied, the line stays
    assert got[2] == "# include /etc/nginx-not-here/proxy_params;"
    assert got[3] == "include conf.d/*.conf;"
    assert got[4] == "include /etc/nginx-not-here/modules-enabled/*.conf;"  # empty glob: fine
    assert got[5] == "include ./conf.d/*.conf;"
    assert noticed(done) == [2, 3]
    assert "put proxy_params beside the config" in done.notices[0].what
    assert [str(c) for c in done.companions] == ["mime.types", "conf.d/a.conf", "conf.d/b.conf"]


@pytest.mark.parametrize(
    ("include", "problem"),
    [("mime.types", "no such file beside the config"), ("../x.conf", "outside the config")],
)
def test_nginx_include_that_cannot_be_found_is_refused(
    tmp_path: Path, include: str, problem: str
) -> None:
    text = f"events {{}}\nhttp {{\n    include {include};\n}}\n"
    with pytest.raises(TemplateError) as info:
        neutralise("nginx", text, tmp_path / "nginx.conf")
    assert (info.value.file, info.value.line) == (tmp_path / "nginx.conf", 3)
    assert problem in info.value.problem
    assert "beside the config" in (info.value.fix or "")


def test_nginx_run_dir_paths_and_unparsable_text_are_left_alone(tmp_path: Path) -> None:
    text = "pid {{ run_dir }}/n.pid;\nerror_log {{run_dir}}/e.log;\n"
    assert neutralise("nginx", text, tmp_path / "a.conf").notices == ()
    broken = "daemon off;\nhttp { server {\n"  # nginx itself says what is wrong
    assert neutralise("nginx", broken, tmp_path / "a.conf").text == broken


# -- HAProxy -----------------------------------------------------------------------------
HAPROXY = """\
global
    log /dev/log local0   # syslog
    log stdout format raw local0
    chroot /var/lib/haproxy
    stats socket /run/haproxy/admin.sock mode 660 level admin
    stats socket ipv4@127.0.0.1:9999 level admin
    stats timeout 30s
    user haproxy
    group haproxy
    daemon
    master-worker
    pidfile /run/haproxy.pid
    # user root   (a comment)
defaults
    log global
    mode http
    errorfile 503 /no/such/folder/503.http
frontend web
    bind {{ listen_host }}:{{ listen_port }}
    log 10.0.0.5:514 local0
    default_backend app
backend app
    server app1 {{ upstream_host }}:{{ upstream_port }}
userlist admins
    user admin insecure-password secret
"""


def test_haproxy_deployed_lines(tmp_path: Path) -> None:
    done = neutralise("haproxy", HAPROXY, tmp_path / "haproxy.cfg")
    got = lines(done)
    assert got[2] == "    # log /dev/log local0   # syslog"
    assert got[3] == "    log stdout format raw local0"
    assert got[4] == "    # chroot /var/lib/haproxy"
    assert got[5] == "    stats socket unix@admin.sock mode 660 level admin"
    assert got[6] == "    stats socket unix@stats.sock level admin"
    assert got[7] == "    stats timeout 30s"
    assert (got[8], got[9]) == ("    # user haproxy", "    # group haproxy")
    assert (got[10], got[11]) == ("    daemon", "    master-worker")  # measured harmless
    assert got[12] == "    pidfile {{ run_dir }}/haproxy.pid"
    assert got[13] == "    # user root   (a comment)"
    assert got[15] == "    log global"
    assert got[17] == "    # errorfile 503 /no/such/folder/503.http"
    assert got[20] == "    # log 10.0.0.5:514 local0"
    assert got[25] == "    user admin insecure-password secret"  # a userlist's user
    assert noticed(done) == [2, 4, 5, 6, 8, 9, 12, 17, 20]


# -- Envoy -------------------------------------------------------------------------------
ENVOY = """\
admin:
  access_log_path: /var/log/envoy/admin.log
  address:
    socket_address: {address: 0.0.0.0, port_value: 9901}  # port_value: 9901
static_resources:
  listeners:
  - name: web
    address:
      socket_address: {address: "{{ listen_host }}", port_value: {{ listen_port }}}
  - name: health
    address:
      socket_address:
        address: 127.0.0.1
        port_value: 8081
    filter_chains:
    - filters:
      - typed_config:
          access_log:
          - typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: "/var/log/envoy/access.log"
          - typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: /dev/stdout
  clusters:
  - name: app
    load_assignment:
      endpoints:
      - lb_endpoints:
        - endpoint: {address: {socket_address: {address: 10.0.0.1, port_value: 8080}}}
"""


def test_envoy_deployed_lines(tmp_path: Path) -> None:
    done = neutralise("envoy", ENVOY, tmp_path / "envoy.yaml")
    got = lines(done)
    assert got[2] == "  access_log_path: /dev/stdout"
    assert got[4] == "    socket_address: {address: 0.0.0.0, port_value: 0}  # port_value: 9901"
    assert got[9] == ENVOY.splitlines()[8]  # the placeholder listener
    assert got[14] == "        port_value: 0"
    assert got[21] == "              path: /dev/stdout"
    assert got[30].endswith("port_value: 8080}}}")  # an upstream, not a listener
    assert noticed(done) == [2, 4, 14, 21]
    assert "listener health: port 8081 changed to 0" in done.notices[2].what


def test_envoy_admin_socket_moves_into_the_run_dir(tmp_path: Path) -> None:
    text = "admin:\n  address:\n    pipe:\n      path: /var/run/envoy/admin.sock\n"
    done = neutralise("envoy", text, tmp_path / "envoy.yaml")
    assert lines(done)[4] == '      path: "admin.sock"'


# -- Traefik -----------------------------------------------------------------------------
TRAEFIK = """\
log:
  level: INFO
  filePath: /var/log/traefik/traefik.log
accessLog: {filePath: /var/log/traefik/access.log}
api:
  dashboard: true
  insecure: true
ping:
  # the default entry point
  entryPoint: traefik
metrics:
  prometheus:
    addEntryPointsLabels: true
entryPoints:
  web:
    address: "{{ listen_host }}:{{ listen_port }}"
  websecure:
    address: ":443"
  dns:
    address: "0.0.0.0:53/udp"
providers:
  docker:
    exposedByDefault: false
  kubernetesCRD: {}
  file:
    directory: /etc/traefik/dynamic
    watch: true
certificatesResolvers:
  le:
    acme:
      storage: /letsencrypt/acme.json
"""


def test_traefik_static_file(tmp_path: Path) -> None:
    static, routes = tmp_path / "traefik.yml", tmp_path / "routes.yml"
    done = neutralise("traefik", TRAEFIK, static, routes)
    got = lines(done)
    assert got[3] == "  filePath: /dev/stderr"
    assert got[4] == 'accessLog: {filePath: "{{ run_dir }}/access.log"}'
    assert got[7] == "  insecure: false"
    assert [got[n] for n in (8, 9, 10)] == [
        "# ping:",
        "  # # the default entry point",
        "  # entryPoint: traefik",
    ]
    assert [got[n] for n in (12, 13)] == ["  # prometheus:", "    # addEntryPointsLabels: true"]
    assert got[16] == TRAEFIK.splitlines()[15]
    assert got[18] == '    address: ":0"'
    assert got[20] == '    address: "0.0.0.0:0/udp"'
    assert [got[n] for n in (22, 23, 24)] == [
        "  # docker:",
        "    # exposedByDefault: false",
        "  # kubernetesCRD: {}",
    ]
    assert got[26] == '    filename: "{{ run_dir }}/routes.yml"'
    assert got[27] == "    watch: true"
    assert got[31] == '      storage: "{{ run_dir }}/acme.json"'
    assert noticed(done) == [3, 4, 7, 8, 12, 18, 20, 22, 24, 26, 31]


def test_traefik_keeps_its_own_traefik_entry_point_but_not_its_port(tmp_path: Path) -> None:
    text = "api: {insecure: true}\nping: {}\nentryPoints:\n  traefik: {address: ':8080'}\n"
    done = neutralise("traefik", text, tmp_path / "t.yml")
    assert (
        done.text == 'api: {insecure: true}\nping: {}\nentryPoints:\n  traefik: {address: ":0"}\n'
    )
    assert noticed(done) == [4]


def test_traefik_dynamic_and_toml_files_are_left_alone(tmp_path: Path) -> None:
    dynamic = "http:\n  services:\n    a: {loadBalancer: {servers: [{url: 'http://x:1'}]}}\n"
    done = neutralise("traefik", dynamic, tmp_path / "routes.yml")
    assert done.notices == ()
    done = ADAPTERS["traefik"].neutralise(
        dynamic, tmp_path / "r.yml", (tmp_path / "s.yml", tmp_path / "r.yml")
    )
    assert done.text == dynamic
    toml = '[entryPoints.web]\naddress = ":80"\n[providers.docker]\n'
    assert neutralise("traefik", toml, tmp_path / "traefik.toml").text == toml


@pytest.mark.parametrize("dynamic", [(), ("a.yml", "b.yml")])
def test_traefik_file_provider_without_one_dynamic_file_is_refused(
    tmp_path: Path, dynamic: tuple[str, ...]
) -> None:
    text = "entryPoints:\n  web: {address: ':80'}\nproviders:\n  file:\n    directory: /etc/t\n"
    with pytest.raises(TemplateError) as info:
        neutralise("traefik", text, tmp_path / "t.yml", *(tmp_path / d for d in dynamic))
    assert (info.value.file, info.value.line) == (tmp_path / "t.yml", 5)
    assert "--config static.yaml --config routes.yaml" in (info.value.fix or "")


def test_traefik_filename_is_matched_by_its_base_name(tmp_path: Path) -> None:
    text = "providers:\n  file:\n    filename: /etc/traefik/b.yml\n"
    done = neutralise("traefik", text, tmp_path / "t.yml", tmp_path / "a.yml", tmp_path / "b.yml")
    assert lines(done)[3] == '    filename: "{{ run_dir }}/b.yml"'


def test_traefik_yaml_error_names_the_line_of_the_problem(tmp_path: Path) -> None:
    text = "entryPoints:\n  web:\n    address: ':80'\n   bad: 1\n"
    with pytest.raises(TemplateError) as info:
        neutralise("traefik", text, tmp_path / "t.yml")
    assert (info.value.file, info.value.line) == (tmp_path / "t.yml", 4)


# -- Caddy -------------------------------------------------------------------------------
CADDY = """\
# admin localhost:2019 (a comment)
{
	admin localhost:2019 {
		origins localhost
	}
	storage file_system {
		root /var/lib/caddy
	}
	log {
		output file /var/log/caddy/caddy.log
	}
}

(common) {
	header X-A "admin localhost:2019"
}

http://:{{ listen_port }} {
	import common
	log {
		output file /var/log/caddy/access.log {
			roll_size 10MiB
		}
	}
	reverse_proxy {{ upstream_host }}:{{ upstream_port }}
}
"""


def test_caddy_deployed_lines(tmp_path: Path) -> None:
    done = neutralise("caddy", CADDY, tmp_path / "Caddyfile")
    got = lines(done)
    assert got[1] == CADDY.splitlines()[0]
    assert got[3] == "\tadmin unix/caddy-admin.sock {"
    assert got[7] == "\t\troot {{ run_dir }}/caddy-data"
    assert got[10] == "\t\toutput file {{ run_dir }}/caddy.log"
    assert got[15] == CADDY.splitlines()[14]  # inside quotes
    assert got[19] == "\timport common"  # a snippet
    assert got[21] == "\t\toutput file {{ run_dir }}/access.log {"
    assert noticed(done) == [3, 7, 10, 21]


def test_caddy_storage_on_one_line_and_admin_off(tmp_path: Path) -> None:
    text = "{\n\tadmin off\n\tstorage file_system /var/lib/caddy\n}\n:80 {\n}\n"
    done = neutralise("caddy", text, tmp_path / "Caddyfile")
    assert lines(done)[2] == "\tadmin off"
    assert lines(done)[3] == "\tstorage file_system {{ run_dir }}/caddy-data"


def test_caddy_imports(tmp_path: Path) -> None:
    (tmp_path / "sites").mkdir()
    (tmp_path / "sites" / "a.caddy").write_text("")
    (tmp_path / "snippets.caddy").write_text("")
    text = (
        "import snippets.caddy\nimport /etc/caddy-not-here/sites/*\n"
        "import /etc/x-not-here/*.caddy\n"
    )
    done = neutralise("caddy", text, tmp_path / "Caddyfile")
    assert lines(done)[2] == "import {{ run_dir }}/sites/*"
    assert lines(done)[3] == "import /etc/x-not-here/*.caddy"  # an empty glob is fine
    assert noticed(done) == [2]
    assert [str(c) for c in done.companions] == ["snippets.caddy", "sites/a.caddy"]
    with pytest.raises(TemplateError) as info:
        neutralise("caddy", ":80 {\n\timport common.caddy\n}\n", tmp_path / "Caddyfile")
    assert info.value.line == 2


def test_relative_paths_are_in_the_run_dir_already(tmp_path: Path) -> None:
    text = "accessLog: {filePath: logs/access.log}\nproviders:\n  file: {filename: routes.yml}\n"
    done = neutralise("traefik", text, tmp_path / "t.yml", tmp_path / "routes.yml")
    assert done.notices == ()
    text = "{\n\tstorage file_system data\n}\n:80 {\n\tlog {\n\t\toutput file access.log\n\t}\n}\n"
    assert neutralise("caddy", text, tmp_path / "Caddyfile").notices == ()


# -- TLS: the run's certificate instead of the deployed host's ---------------------------
NGINX_TLS = """\
http {
    ssl_session_ticket_key /etc/nginx-not-here/ticket.key;
    ssl_dhparam /etc/nginx-not-here/dhparam.pem;
    server {
        listen {{ listen_host }}:{{ listen_port }} ssl;
        ssl_certificate /etc/letsencrypt/live/example.com/fullchain.pem;
        ssl_certificate_key /etc/letsencrypt/live/example.com/privkey.pem;
        ssl_certificate /etc/nginx/ecdsa.crt; ssl_certificate_key /etc/nginx/ecdsa.key;
        ssl_trusted_certificate /etc/letsencrypt/live/example.com/chain.pem;
        ssl_client_certificate /etc/nginx/clients.pem;
        ssl_verify_client on;
        ssl_stapling on;
        ssl_stapling_file /etc/nginx/ocsp.der;
        ssl_password_file /etc/nginx/passwords;
        ssl_crl /etc/nginx/revoked.pem;
        # ssl_certificate /etc/old.pem;
    }
    server {
        listen {{ listen_host }}:{{ listen_port }} ssl;
        ssl_certificate {{ tls_cert }};
        ssl_certificate_key {{tls_key}};
        ssl_verify_client optional;
        ssl_dhparam dhparam.pem;
    }
}
"""


def test_nginx_tls_lines(tmp_path: Path) -> None:
    done = neutralise("nginx", NGINX_TLS, tmp_path / "nginx.conf")
    got = lines(done)
    assert got[2] == "    # ssl_session_ticket_key /etc/nginx-not-here/ticket.key;"
    assert got[3] == "    # ssl_dhparam /etc/nginx-not-here/dhparam.pem;"
    assert got[6] == "        ssl_certificate {{ tls_cert }};"
    assert got[7] == "        ssl_certificate_key {{ tls_key }};"
    # an RSA+ECDSA server: each pair becomes the run's (nginx accepts it twice)
    assert got[8] == "        ssl_certificate {{ tls_cert }}; ssl_certificate_key {{ tls_key }};"
    assert got[9] == "        ssl_trusted_certificate {{ tls_ca }};"
    assert got[10] == "        ssl_client_certificate {{ tls_ca }};"
    assert got[11] == "        ssl_verify_client optional;"
    assert got[12] == "        ssl_stapling on;"  # measured: ignored with a warning
    assert [got[n] for n in (13, 14, 15)] == [
        "        # ssl_stapling_file /etc/nginx/ocsp.der;",
        "        # ssl_password_file /etc/nginx/passwords;",
        "        # ssl_crl /etc/nginx/revoked.pem;",
    ]
    assert got[16] == "        # ssl_certificate /etc/old.pem;"
    assert [got[n] for n in range(18, 25)] == NGINX_TLS.splitlines()[17:24]  # written for us
    assert noticed(done) == [2, 3, 6, 7, 8, 8, 9, 10, 11, 13, 14, 15]
    assert done.notices[2].what == (
        "ssl_certificate /etc/letsencrypt/live/example.com/fullchain.pem; → the run's "
        "certificate ({{ tls_cert }})"
    )


HAPROXY_TLS = """\
global
    crt-base /etc/haproxy/certs
    ssl-dh-param-file /etc/haproxy-not-here/dhparam.pem
    issuers-chain-path /etc/haproxy-not-here/issuers
frontend web
    bind {{ listen_host }}:{{ listen_port }} ssl crt site.pem crt /etc/ha/ecdsa.pem alpn h2
    bind :8443 ssl crt-list /etc/ha/list.txt ca-file clients.pem crl-file /x/crl.pem verify required
    bind :8444 ssl crt {{ tls_pem }} verify optional   # crt /etc/x.pem
backend app
    server app1 {{ upstream_host }}:{{ upstream_port }} ssl ca-file /etc/ssl/ca.pem
"""


def test_haproxy_tls_lines(tmp_path: Path) -> None:
    done = neutralise("haproxy", HAPROXY_TLS, tmp_path / "haproxy.cfg")
    got = lines(done)
    assert got[2] == "    crt-base /etc/haproxy/certs"  # measured harmless
    assert got[3] == "    # ssl-dh-param-file /etc/haproxy-not-here/dhparam.pem"
    assert got[4] == "    # issuers-chain-path /etc/haproxy-not-here/issuers"
    assert got[6] == (
        "    bind {{ listen_host }}:{{ listen_port }} ssl crt {{ tls_pem }} crt {{ tls_pem }} "
        "alpn h2"
    )
    assert got[7] == (
        "    bind :8443 ssl crt {{ tls_pem }} ca-file {{ tls_ca }} "
        + " " * len("crl-file /x/crl.pem")
        + " verify optional"
    )
    assert got[8] == HAPROXY_TLS.splitlines()[7]
    assert got[10] == HAPROXY_TLS.splitlines()[9]  # towards the origin: not in scope
    assert noticed(done) == [3, 4, 6, 6, 7, 7, 7, 7]
    assert [n.what.split(" →")[0].split(" removed")[0] for n in done.notices[4:]] == [
        "crt-list /etc/ha/list.txt",
        "ca-file clients.pem",
        "crl-file /x/crl.pem",
        "verify required",
    ]


_DOWNSTREAM = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
ENVOY_TLS = """\
static_resources:
  listeners:
  - name: web
    filter_chains:
    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": DOWNSTREAM
          require_client_certificate: true
          common_tls_context:
            tls_certificates:
            - certificate_chain: {filename: /etc/envoy/cert.pem}
              private_key:
                filename: "/etc/envoy/key.pem"
              ocsp_staple: {filename: /etc/envoy/ocsp.der}
            - certificate_chain:
                inline_string: |
                  -----BEGIN CERTIFICATE-----
                  MIIB
                  -----END CERTIFICATE-----
              private_key: {inline_bytes: "LS0tLS1CRUdJTg=="}
            validation_context:
              trusted_ca: {filename: /etc/envoy/ca.pem}
              crl:
                filename: /etc/envoy/crl.pem
  clusters:
  - name: app
    transport_socket:
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        common_tls_context:
          validation_context: {trusted_ca: {filename: /etc/ssl/certs/ca.pem}}
  secrets:
  - name: server
    tls_certificate:
      certificate_chain: {filename: /etc/envoy/s.pem}
      private_key: {filename: "{{ tls_key }}"}
""".replace("DOWNSTREAM", _DOWNSTREAM)


def test_envoy_tls_lines(tmp_path: Path) -> None:
    done = neutralise("envoy", ENVOY_TLS, tmp_path / "envoy.yaml")
    got = lines(done)
    assert got[9] == "          require_client_certificate: false"
    assert got[12] == '            - certificate_chain: {filename: "{{ tls_cert }}"}'
    assert got[14] == '                filename: "{{ tls_key }}"'
    assert got[15] == "              # ocsp_staple: {filename: /etc/envoy/ocsp.der}"
    # an inline certificate is replaced too (not issued by the run's CA); lines kept
    assert [got[n] for n in range(17, 21)] == [
        '                filename: "{{ tls_cert }}"',
        "",
        "",
        "",
    ]
    assert got[21] == '              private_key: {filename: "{{ tls_key }}"}'
    assert got[23] == '              trusted_ca: {filename: "{{ tls_ca }}"}'
    assert (got[24], got[25]) == (
        "              # crl:",
        "                # filename: /etc/envoy/crl.pem",
    )
    assert got[32] == ENVOY_TLS.splitlines()[31]  # upstream: not in scope
    assert got[36] == '      certificate_chain: {filename: "{{ tls_cert }}"}'  # a static secret
    assert got[37] == ENVOY_TLS.splitlines()[36]
    assert noticed(done) == [9, 12, 14, 15, 17, 21, 23, 24, 36]
    assert "clients would refuse it" in done.notices[4].what


def test_envoy_sds_secret_is_refused(tmp_path: Path) -> None:
    text = (
        "static_resources:\n  listeners:\n  - filter_chains:\n    - transport_socket:\n"
        "        typed_config:\n"
        '          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3'
        ".DownstreamTlsContext\n"
        "          common_tls_context:\n"
        "            tls_certificate_sds_secret_configs:\n"
        "            - name: server_cert\n"
        "              sds_config:\n"
        "                path_config_source: {path: /etc/envoy/sds.yaml}\n"
    )
    with pytest.raises(TemplateError) as info:
        neutralise("envoy", text, tmp_path / "envoy.yaml")
    assert (info.value.file, info.value.line) == (tmp_path / "envoy.yaml", 10)
    assert "SDS secret (server_cert)" in info.value.problem
    assert 'certificate_chain: {filename: "{{ tls_cert }}"}' in (info.value.fix or "")


TRAEFIK_TLS_STATIC = """\
entryPoints:
  websecure:
    address: "{{ listen_host }}:{{ listen_port }}"
    http:
      tls:
        certResolver: le
certificatesResolvers:
  le:
    acme:
      storage: /letsencrypt/acme.json
"""
TRAEFIK_TLS_ROUTES = """\
http:
  routers:
    a:
      tls: {certResolver: le, options: strict}
    b:
      tls:
        certResolver: le
        domains: [{main: example.com}]
    c:
      tls: {options: strict, certResolver: le}
tls:
  options:
    strict:
      clientAuth:
        caFiles: [/etc/traefik/clients.pem]
        clientAuthType: RequireAndVerifyClientCert
  certificates:
    - certFile: /etc/traefik/certs/example.com.crt
      keyFile: /etc/traefik/certs/example.com.key
  stores:
    default:
      defaultCertificate: {certFile: /etc/traefik/default.crt, keyFile: "{{ tls_key }}"}
"""


def test_traefik_tls_lines(tmp_path: Path) -> None:
    static, routes = tmp_path / "traefik.yml", tmp_path / "routes.yml"
    routes.write_text(TRAEFIK_TLS_ROUTES)
    done = neutralise("traefik", TRAEFIK_TLS_STATIC, static, routes)
    # alone in `tls:` it is replaced (an empty `tls:` is refused by Traefik, measured)
    assert lines(done)[6] == "        options: default"
    assert noticed(done) == [6, 10]
    done = ADAPTERS["traefik"].neutralise(TRAEFIK_TLS_ROUTES, routes, (static, routes))
    got = lines(done)
    assert got[4] == "      tls: {" + " " * len("certResolver: le,") + " options: strict}"
    assert got[7] == "        # certResolver: le"
    assert got[10] == "      tls: {options: strict, " + " " * len("certResolver: le") + "}"
    assert got[15] == '        caFiles: ["{{ tls_ca }}"]'
    assert got[16] == "        clientAuthType: VerifyClientCertIfGiven"
    assert got[18] == '    - certFile: "{{ tls_cert }}"'
    assert got[19] == '      keyFile: "{{ tls_key }}"'
    assert got[22] == (
        '      defaultCertificate: {certFile: "{{ tls_cert }}", keyFile: "{{ tls_key }}"}'
    )
    assert noticed(done) == [4, 7, 10, 15, 16, 18, 19, 22]


def test_traefik_acme_without_a_certificate_is_refused(tmp_path: Path) -> None:
    static, routes = tmp_path / "traefik.yml", tmp_path / "routes.yml"
    routes.write_text("http:\n  routers:\n    a:\n      tls:\n        certResolver: le\n")
    with pytest.raises(TemplateError) as info:
        neutralise("traefik", TRAEFIK_TLS_STATIC, static, routes)
    assert (info.value.file, info.value.line) == (static, 6)
    assert "self-signed default certificate" in info.value.problem
    assert 'defaultCertificate: {certFile: "{{ tls_cert }}"' in (info.value.fix or "")
    with pytest.raises(TemplateError) as info:
        ADAPTERS["traefik"].neutralise(routes.read_text(), routes, (static, routes))
    assert (info.value.file, info.value.line) == (routes, 5)


CADDY_TLS = """\
{
	email ops@example.com
}
(hardening) {
	tls {
		protocols tls1.2 tls1.3
	}
}
example.com:{{ listen_port }}, www.example.com:{{ listen_port }} {
	bind {{ listen_host }}
	tls /etc/caddy/certs/example.com.pem /etc/caddy/certs/example.com.key {
		protocols tls1.2 tls1.3
		client_auth {
			mode require_and_verify
		}
		dns cloudflare {env.CF_API_TOKEN}
	}
	reverse_proxy {{ upstream_host }}:{{ upstream_port }} {
		transport http {
			tls
		}
	}
}
https://:{{ listen_port }} {
	tls ops@example.com
}
:{{ listen_port }} {
	tls internal
}
http://example.com:{{ listen_port }} {
	tls {{ tls_cert }} {{ tls_key }}
}
"""


def test_caddy_tls_lines(tmp_path: Path) -> None:
    done = neutralise("caddy", CADDY_TLS, tmp_path / "Caddyfile")
    got = lines(done)
    assert got[2] == "\temail ops@example.com"
    assert got[5] == "\ttls {{ tls_cert }} {{ tls_key }} {"  # in a snippet too
    assert got[6] == "\t\tprotocols tls1.2 tls1.3"
    assert got[9] == "https://:{{ listen_port }} {"  # one address, no host name
    assert got[11] == "\ttls {{ tls_cert }} {{ tls_key }} {"
    assert got[12] == "\t\tprotocols tls1.2 tls1.3"
    assert [got[n] for n in (13, 14, 15, 16)] == [
        "\t\t# client_auth {",
        "\t\t\t# mode require_and_verify",
        "\t\t# }",
        "\t\t# dns cloudflare {env.CF_API_TOKEN}",
    ]
    assert got[20] == "\t\t\ttls"  # towards the origin: not in scope
    assert got[25] == "\ttls {{ tls_cert }} {{ tls_key }}"
    assert got[28] == "\ttls {{ tls_cert }} {{ tls_key }}"
    assert got[30] == CADDY_TLS.splitlines()[29]  # http://: no TLS, left alone
    assert noticed(done) == [5, 9, 11, 13, 16, 25, 28]
    assert "not from ACME" in done.notices[5].what
    assert "Caddy's own CA" in done.notices[6].what


def test_caddy_domain_site_without_a_tls_line_is_refused(tmp_path: Path) -> None:
    text = "example.com:{{ listen_port }} {\n\treverse_proxy {{ upstream_host }}:1\n}\n"
    with pytest.raises(TemplateError) as info:
        neutralise("caddy", text, tmp_path / "Caddyfile")
    assert (info.value.file, info.value.line) == (tmp_path / "Caddyfile", 1)
    assert "`tls {{ tls_cert }} {{ tls_key }}`" in (info.value.fix or "")
