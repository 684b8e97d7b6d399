"""The public API is what __all__ says, and every name in it exists."""

from __future__ import annotations

from pathlib import Path

import proxytest

ROOT = Path(__file__).resolve().parents[1]


def test_all_names_exist() -> None:
    for name in proxytest.__all__:
        assert hasattr(proxytest, name), name


def test_public_names_are_exactly_all() -> None:
    public = {
        name for name in vars(proxytest)
        if not name.startswith("_") and not isinstance(getattr(proxytest, name), type(proxytest))
    }  # fmt: skip
    assert public == set(proxytest.__all__) - {"__version__"}


def test_the_catalogue_holds_every_check_once_in_family_order() -> None:
    from proxytest.checks import _MODULES, FAMILIES

    # Every check module's entries are in the catalogue, each once.
    entries = [check.id for module in _MODULES for check in module.CHECKS]
    assert sorted(entries) == sorted(proxytest.CHECKS)
    families = [check.family for check in proxytest.CHECKS.values()]
    runs = [f for i, f in enumerate(families) if i == 0 or families[i - 1] != f]
    assert runs == list(FAMILIES)  # each family in one block, in the families' order
    for check in proxytest.CHECKS.values():
        assert check.description and len(check.description) < 100


def test_the_version_comes_from_the_package_metadata() -> None:
    from importlib import metadata

    assert proxytest.__version__ == metadata.version("proxytest")


def test_the_docstring_example_runs_as_written(tmp_path: Path) -> None:
    """The public example builds the matrix's options, not a bare RunOptions()."""
    matrix_file = tmp_path / "matrix.yaml"
    matrix_file.write_text(
        "checks: ['sse.*']\nconcurrency: 2\nmax_hold: 12\nheartbeat: 3\n"
        "load_connections: 40\ndocker_network: bridge\ntargets:\n"
        f"  - proxy: nginx\n    configs: [{ROOT / 'proxies/nginx/default.conf'}]\n"
    )
    matrix = proxytest.load_matrix(matrix_file, tuple(proxytest.ADAPTERS))
    options = proxytest.RunOptions.from_matrix(matrix)
    assert [c.id for c in options.checks] == [i for i in proxytest.CHECKS if i.startswith("sse.")]
    assert options.concurrency == 2
    assert (options.settings.max_hold_s, options.settings.heartbeat_s) == (12, 3)
    assert options.settings.load_connections == 40
    assert options.docker_network == "bridge"
    assert proxytest.__doc__ is not None and "RunOptions.from_matrix(matrix" in proxytest.__doc__
