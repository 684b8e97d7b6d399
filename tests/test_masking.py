"""Config text in reports: secrets masked line by line, or the files left out (a flag)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from proxytest.masking import MASK, mask_secrets
from proxytest.matrix import TargetSpec
from proxytest.options import RunOptions
from proxytest.runner import config_files

from .conftest import ROOT, Cli


@pytest.mark.parametrize(
    ("line", "masked"),
    [
        ('proxy_set_header Authorization "Bearer abc.def";',
         f"proxy_set_header Authorization {MASK};"),
        ("    password: hunter2", f"    password: {MASK}"),
        ('"client_secret": "zzz",', f'"client_secret": {MASK},'),
        ("api_key = AKIA123", f"api_key = {MASK}"),
        ("apiKey: k-123", f"apiKey: {MASK}"),
        ("X-Api-Key abc;", f"X-Api-Key {MASK};"),
        ("  token: eyJhbGciOi", f"  token: {MASK}"),
        ("    stats auth admin:hunter2", f"    stats auth {MASK}"),
        ("    user admin insecure-password hunter3", f"    user admin insecure-password {MASK}"),
        ("    user bob password $6$rounds=5000$salt$hash", f"    user bob password {MASK}"),
        ("    bob $2a$14$Zkx19XLiW6VYouLHR5NmfOFU0z2GTNmpkT/5qqR7hx4IjWJ", f"    bob {MASK}"),
        ('  - "test:$apr1$H6uskkkW$IgXLP6ewTrSuBkTrqE8wj/"', f'  - "test:{MASK}"'),
        ("proxy_pass http://bob:s3cret@upstream:8080/;",
         f"proxy_pass http://bob:{MASK}@upstream:8080/;"),
        ('inline_string: "-----BEGIN PRIVATE KEY-----\\nMIIEv\\n-----END PRIVATE KEY-----"',
         f'inline_string: "-----BEGIN PRIVATE KEY-----{MASK}-----END PRIVATE KEY-----"'),
        ("# password: an old one, commented out", f"# password: {MASK}"),
    ],
)  # fmt: skip
def test_a_line_that_looks_like_a_secret_keeps_its_key_not_its_value(
    line: str, masked: str
) -> None:
    assert mask_secrets(line + "\n") == masked + "\n"


@pytest.mark.parametrize(
    "line",
    [
        "server_tokens off;",
        "auth_basic_user_file /etc/nginx/.htpasswd;",  # a path names the secret's file
        "ssl_password_file /etc/keys/global.pass;",
        "ssl_certificate_key /etc/ssl/private/site.key;",
        "proxy_set_header X-Auth $http_authorization;",
        "proxy_pass http://{{ upstream_host }}:{{ upstream_port }};",
        "tls_certificate_sds_secret_configs:",
        "-----BEGIN CERTIFICATE-----",
        "password_file: /run/secrets/pw",
        'proxy_set_header Proxy-Authorization "";',  # an empty value removes the header
        "proxy_set_header Authorization '';",
    ],
)
def test_what_only_names_a_secret_is_kept(line: str) -> None:
    assert mask_secrets(line + "\n") == line + "\n"


def test_blocks_are_masked_line_by_line_and_line_numbers_still_hold() -> None:
    text = (
        "tls:\n"
        "  token: |\n"
        "    first-half\n"
        "    second-half\n"
        "  next: 1\n"
        "-----BEGIN RSA PRIVATE KEY-----\n"
        "MIIEowIBAAKCAQEA\n"
        "-----END RSA PRIVATE KEY-----\n"
        "after: 2\n"
    )
    assert mask_secrets(text) == (
        "tls:\n"
        "  token: |\n"
        f"    {MASK}\n"
        f"    {MASK}\n"
        "  next: 1\n"
        "-----BEGIN RSA PRIVATE KEY-----\n"
        f"{MASK}\n"
        "-----END RSA PRIVATE KEY-----\n"
        "after: 2\n"
    )


def test_the_shipped_configs_show_unchanged() -> None:
    files = [p for p in sorted((ROOT / "proxies").rglob("*")) if p.is_file()]
    assert files
    for path in files:
        text = path.read_text()
        assert mask_secrets(text) == text, path


NGINX_WITH_A_TOKEN = """\
worker_processes 1;
pid {{ run_dir }}/n.pid;
events {}
http {
    access_log off;
    server {
        listen {{ listen_host }}:{{ listen_port }};
        location / {
            proxy_set_header Authorization "Bearer s3cr3t-t0ken";
            proxy_pass http://{{ upstream_host }}:{{ upstream_port }};
        }
    }
}
"""


def test_config_files_in_reports_are_masked(tmp_path: Path) -> None:
    config = tmp_path / "site.conf"
    config.write_text(NGINX_WITH_A_TOKEN)
    (shown,) = config_files(TargetSpec("nginx", "site", (config,)))
    assert "s3cr3t" not in shown.text
    assert f"proxy_set_header Authorization {MASK};" in shown.text
    assert len(shown.text.splitlines()) == len(NGINX_WITH_A_TOKEN.splitlines())


def test_the_option_to_leave_config_out_goes_through_from_matrix() -> None:
    assert RunOptions.from_matrix().config_in_reports is True
    assert RunOptions.from_matrix(config_in_reports=None).config_in_reports is True
    assert RunOptions.from_matrix(config_in_reports=False).config_in_reports is False


def test_the_cli_masks_config_text_or_leaves_it_out(cli: Cli, tmp_path: Path) -> None:
    config = tmp_path / "site.conf"
    config.write_text(NGINX_WITH_A_TOKEN)
    for flags in ((), ("--no-config-in-reports",)):
        reports = tmp_path / f"reports{len(flags)}"
        done = cli("check", "--proxy", "nginx", "--config", str(config), "--checks", "ws.upgrade",
                   "--report-dir", str(reports), *flags)  # fmt: skip
        assert done.returncode == 1, done.stdout + done.stderr  # no Upgrade forwarding
        (target,) = json.loads((reports / "results.json").read_text())["targets"]
        every_file = "".join(p.read_text() for p in reports.rglob("*.*") if p.is_file())
        assert "s3cr3t" not in every_file
        if flags:
            assert target["config_files"] == []
            assert "proxy_set_header Authorization" not in every_file
        else:
            assert MASK in target["config_files"][0]["text"]
            assert "proxy_set_header Authorization" in (reports / "report.html").read_text()


MATRIX = """\
checks: [ws.upgrade]
targets:
  - proxy: nginx
    setup: site
    configs: [site.conf]
    expect: {ws.upgrade: fail}
"""


@pytest.mark.parametrize("how", ["flag", "ini"])
def test_the_pytest_plugin_leaves_config_out_by_flag_or_ini_key(
    pytester: pytest.Pytester, how: str
) -> None:
    pytester.makefile(".conf", site=NGINX_WITH_A_TOKEN)
    (pytester.path / "matrix.yaml").write_text(MATRIX)
    reports = pytester.path / "reports"
    args = ["--proxytest-matrix", "matrix.yaml", "--proxytest-report-dir", str(reports)]
    if how == "flag":
        args.append("--proxytest-no-config-in-reports")
    else:
        pytester.makeini("[pytest]\nproxytest_no_config_in_reports = true\n")
    result = pytester.runpytest_subprocess(*args)
    result.assert_outcomes(xfailed=1)
    (target,) = json.loads((reports / "results.json").read_text())["targets"]
    assert target["config_files"] == []


def test_a_key_file_is_not_the_secret_but_its_inline_body_is() -> None:
    text = (
        'private_key: {filename: "{{ tls_key }}"}\n'
        "private_key: {filename: /etc/envoy/key.pem}\n"
        "ssl_certificate_key {{ tls_key }};\n"
        "private_key:\n"
        "  filename: /etc/envoy/key.pem\n"
        "private_key:\n"
        "  inline_string: hunter2\n"
        "private_key: {inline_string: hunter2}\n"
    )
    masked = mask_secrets(text).splitlines()
    assert masked[:5] == text.splitlines()[:5]
    assert masked[6] == "  ********"
    assert masked[7] == "private_key: ********"
