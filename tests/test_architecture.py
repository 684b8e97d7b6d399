"""The layering that docs/architecture.md promises, held by reading the package's source.

* Only ``runtimes/docker.py`` imports the Docker SDK.
* Only ``runtimes/`` starts or ends a process (the test origin's own process too).
* Adapters describe a proxy: no process management, no runtime, no event loop.
* Every adapter hint names a failure kind that the check (or some check) reports.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from proxytest.adapters import ADAPTERS
from proxytest.checks import CHECKS
from proxytest.results import Failure

PACKAGE = Path(__file__).resolve().parents[1] / "proxytest"

# Calls that start or end a process: only proxytest/runtimes may make them.
PROCESS_CALLS = {
    ("asyncio", "create_subprocess_exec"),
    ("asyncio", "create_subprocess_shell"),
    ("os", "kill"),
    ("os", "killpg"),
    ("os", "fork"),
    ("os", "system"),
    ("os", "popen"),
    ("os", "posix_spawn"),
    ("os", "execv"),
    ("os", "execvp"),
}
PROCESS_MODULES = {"subprocess", "multiprocessing", "pty"}


def modules() -> Iterator[tuple[str, ast.Module]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path.relative_to(PACKAGE).as_posix(), ast.parse(path.read_text(), str(path))


def imported(tree: ast.Module) -> set[str]:
    """Top-level names of every module ``tree`` imports (relative imports as '.name')."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            names.add(base)
            names |= {f"{base}.{alias.name}" if node.level else base for alias in node.names}
    return names


def calls(tree: ast.Module) -> set[tuple[str, str]]:
    """``module.function`` calls in ``tree``, as (module, function)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            if isinstance(owner, ast.Name):
                found.add((owner.id, node.func.attr))
    return found


def test_only_the_docker_runtime_imports_the_docker_sdk() -> None:
    importers = [
        name
        for name, tree in modules()
        if any(i == "docker" or i.startswith("docker.") for i in imported(tree))
    ]
    assert importers == ["runtimes/docker.py"]


def test_only_runtimes_start_or_end_processes() -> None:
    offenders = {}
    for name, tree in modules():
        if name.startswith("runtimes/"):
            continue
        bad = sorted(calls(tree) & PROCESS_CALLS) + sorted(
            i for i in imported(tree) if i.split(".")[0] in PROCESS_MODULES
        )
        if bad:
            offenders[name] = bad
    assert offenders == {}
    # ... and the runtimes do: the scan would notice the calls it looks for.
    local = dict(modules())["runtimes/local.py"]
    assert {("asyncio", "create_subprocess_exec"), ("os", "killpg")} <= calls(local)


def test_adapters_describe_and_run_nothing() -> None:
    for name, tree in modules():
        if name.startswith("adapters/"):
            forbidden = {
                i for i in imported(tree) if i.split(".")[0] in {"asyncio", *PROCESS_MODULES}
            }
            forbidden |= {i for i in imported(tree) if i.startswith("..runtimes")}
            assert not forbidden, f"{name} imports {forbidden}"


def _hint_keys() -> Iterator[tuple[str, str]]:
    for proxy, adapter in ADAPTERS.items():
        for key in adapter.hints:
            yield proxy, key


@pytest.mark.parametrize(("proxy", "key"), list(_hint_keys()))
def test_every_adapter_hint_key_is_a_failure_a_check_reports(proxy: str, key: str) -> None:
    check_id, _, failure = key.rpartition(":")
    assert failure in set(Failure), f"{proxy}: hint {key!r} names no Failure"
    if check_id:
        assert check_id in CHECKS, f"{proxy}: hint {key!r} names no check"
        reported = set(CHECKS[check_id].hints)
    else:
        reported = {f for check in CHECKS.values() for f in check.hints}
    assert Failure(failure) in reported, f"{proxy}: no check reports {failure!r}"


def test_every_failure_kind_has_a_neutral_hint_somewhere() -> None:
    hinted = {f for check in CHECKS.values() for f in check.hints}
    assert hinted == set(Failure), set(Failure) - hinted


# The layers of docs/architecture.md, top down: a module imports (at run time)
# only from its own layer and the layers below it.
LAYERS = (
    ("cli", "pytest_plugin", "__init__", "__main__"),
    ("reports",),
    ("runner", "measure", "pathprobe", "fixing"),
    ("options",),
    ("matrix", "starter", "shards"),
    ("checks",),
    ("probes",),
    ("harness", "templates"),
    ("origin",),
    ("fixes",),
    ("adapters",),
    ("runtimes",),
    (
        "results",
        "errors",
        "settings",
        "timing",
        "lag",
        "masking",
        "_aio",
        "_version",
        "routes",
        "tls",
    ),
)


def _layer(part: str) -> int:
    for number, names in enumerate(LAYERS):
        if part.removesuffix(".py") in names:
            return number
    raise AssertionError(f"proxytest/{part} is in no layer of LAYERS")


def _runtime_imports(tree: ast.Module, name: str) -> Iterator[str]:
    """Package-internal modules imported outside ``if TYPE_CHECKING:``, as top-level parts."""
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
            skipped |= {id(child) for child in ast.walk(node)}
    depth = name.count("/")  # folder depth of this module inside the package
    for node in ast.walk(tree):
        if id(node) in skipped or not isinstance(node, ast.ImportFrom) or not node.level:
            continue
        parts = [*name.split("/")[:-1]][: max(0, depth - (node.level - 1))]
        target = [*parts, *(node.module or "").split(".")] if node.module else parts
        if not target or not target[0]:
            target = [alias.name for alias in node.names][:1]
        yield target[0]


def test_each_layer_imports_only_from_itself_and_below() -> None:
    upward = []
    for name, tree in modules():
        own = _layer(name.split("/")[0])
        for part in _runtime_imports(tree, name):
            if _layer(part) < own:
                upward.append(f"{name} imports {part}")
    assert upward == []
