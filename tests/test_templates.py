"""Placeholder rendering and its errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxytest.errors import TemplateError, UsageError
from proxytest.options import RunOptions, check_targets
from proxytest.templates import Placeholders, render_files, render_text

VALUES = {
    "listen_host": "127.0.0.1",
    "listen_port": "8080",
    "upstream_host": "127.0.0.1",
    "upstream_port": "9090",
    "run_dir": "/tmp/run",
}


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
            specs.extend(discover_setup(root, proxy_dir.name, setup))
    assert len(specs) >= 10
    for path in specs:
        render_text(path.read_text(), VALUES, source=path)  # raises on a bad placeholder


def test_check_targets_fails_before_anything_starts(tmp_path: Path) -> None:
    from proxytest.matrix import TargetSpec

    bad = tmp_path / "bad.conf"
    bad.write_text("listen {{ listen_port }};\nroot {{ docroot }};\n")
    with pytest.raises(TemplateError) as info:
        check_targets([TargetSpec("nginx", "bad", (bad,))], RunOptions())
    assert (info.value.file, info.value.line) == (bad, 2)
