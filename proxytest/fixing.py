"""`proxytest fix`: run the checks, plan the config changes, prove them, write them.

For each target: the first run's failures and degradations (with the failure
kind each evaluation named) become :class:`~proxytest.fixes.base.Finding`\\ s;
the proxy's planner (``fixes/<proxy>.py``) turns them into a :class:`Plan`;
the patched files are written to a private copy of the config (a run dir, so
a killed run leaves nothing behind); the checks each change addresses and
every check that passed before run again on the copy. The plan is proven when
every one of them passes: a fix must not break what worked. Only a proven plan
is ever written to the user's files (``write=True``), each with a backup
beside it. docs/architecture.md, "Config fixes".
"""

from __future__ import annotations

import contextlib
import difflib
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from . import adapters
from .errors import UsageError
from .fixes import caddy, envoy, haproxy, nginx, traefik
from .fixes.base import Finding, Plan, Planner, unified_diff
from .matrix import TargetSpec
from .options import RunOptions
from .results import (
    CheckResult,
    ConfigFile,
    Failure,
    FixChange,
    FixRefusal,
    FixRow,
    FixStatus,
    RunResult,
    TargetFix,
    TargetResult,
    TargetStatus,
    Verdict,
)
from .runner import Progress, run_targets
from .runtimes.local import make_run_dir, remove_run_dir
from .starter import starter_dir
from .templates import load_config, read_template

__all__ = ["PLANNERS", "Prepared", "findings_of", "fix_targets", "prepare", "writable_problem"]

PLANNERS: Mapping[str, Planner] = {
    "nginx": nginx.PLANNER,
    "haproxy": haproxy.PLANNER,
    "envoy": envoy.PLANNER,
    "traefik": traefik.PLANNER,
    "caddy": caddy.PLANNER,
}
_BROKEN = (Verdict.FAIL, Verdict.DEGRADED)
BACKUP_SUFFIX = ".bak"  # nginx.conf -> nginx.conf.bak (then .bak.1, .bak.2, …)
_MAX_BACKUPS = 1000


@dataclass(frozen=True)
class Prepared:
    """A target's config as the user wrote it: every file (includes too), keyed by path.

    ``files`` is what the planner reads (main file first); ``dests`` places each
    file in a copy of the config the way the run places them (given files by base
    name, included ones at their path relative to the main file).
    """

    spec: TargetSpec
    files: Mapping[Path, str]
    dests: Mapping[Path, str]


def prepare(spec: TargetSpec) -> Prepared:
    """Read ``spec``'s config files and the files they include (raw, byte for byte)."""
    template = load_config(spec.configs, adapters.get(spec.proxy))
    files = {f.source: read_template(f.source) for f in template.files}
    dests = {f.source: f.dest.as_posix() for f in template.files}
    return Prepared(spec, files, dests)


def writable_problem(path: Path) -> str | None:
    """Why ``--write`` could not replace ``path`` (and put a backup beside it), or None."""
    try:
        shipped = starter_dir().resolve()
    except UsageError:
        shipped = None
    resolved = path.resolve()
    if shipped is not None and resolved.is_relative_to(shipped) and not _is_clone(shipped):
        return (
            "it is a setup shipped inside proxytest's package (`proxytest init` copies them here)"
        )
    if not os.access(resolved.parent, os.W_OK | os.X_OK):
        return f"its folder {resolved.parent} is not writable (the backup goes beside it)"
    if not os.access(resolved, os.W_OK):
        return "it is not writable"
    return None


def _is_clone(folder: Path) -> bool:
    """A repository clone (its setups are the user's to edit), not an installed package."""
    return (folder / "pyproject.toml").is_file()


def findings_of(result: TargetResult) -> list[Finding]:
    """The target's failures and degradations that name a failure kind."""
    found = []
    for r in result.results:
        if r.verdict in _BROKEN and r.failure:
            with contextlib.suppress(ValueError):  # a kind this version does not know
                found.append(Finding(r.check, Failure(r.failure), r.metrics))
    return found


async def fix_targets(
    targets: Sequence[TargetSpec],
    options: RunOptions,
    *,
    write: bool = False,
    before_progress: Progress | None = None,
    after_progress: Progress | None = None,
) -> RunResult:
    """Run, plan, prove (and with ``write``, apply) a fix for each of ``targets``.

    A patch can unblock traffic that then meets the next limit (Envoy's WebSockets,
    once upgraded, fill its circuit breakers): when the re-run shows a check that must
    pass failing with a kind the planner has a change for, that change is added and the
    copy runs again, at most :data:`ROUNDS` times in all.

    The result is the first run's, with one :class:`TargetFix` per target in ``fixes``.
    """
    started = time.monotonic()
    prepared = {spec.id: prepare(spec) for spec in targets}
    if write:
        _require_writable(prepared.values())
    before = await run_targets(targets, options, before_progress)
    plans = {t.id: _plan(prepared[t.id], t) for t in before.targets if t.status == TargetStatus.OK}
    firsts = {t.id: t for t in before.targets}
    afters: dict[str, TargetResult] = {}
    rounds: dict[str, int] = {}
    pending = [i for i, plan in plans.items() if not plan.empty]
    for _ in range(ROUNDS):
        if not pending:
            break
        again = await _run_copies(
            [(prepared[i], plans[i], _rerun(firsts[i], plans[i])) for i in pending],
            options,
            after_progress,
        )
        afters.update(again)
        rounds.update({i: rounds.get(i, 0) + 1 for i in pending})
        pending = [i for i in pending if _extend(i, prepared[i], plans, firsts[i], again.get(i))]
    fixes = []
    for target in before.targets:
        plan = plans.get(target.id)
        fix = _judge(
            target, prepared[target.id], plan, afters.get(target.id), rounds.get(target.id, 0)
        )
        if write and fix.status.writable and plan is not None:
            fix = _write(fix, prepared[target.id], plan)
        fixes.append(fix)
    return replace(before, duration_s=time.monotonic() - started, fixes=tuple(fixes))


ROUNDS = 3  # runs of a patched copy at most: the first patch, and two extensions


async def _run_copies(
    work: Sequence[tuple[Prepared, Plan, list[str]]],
    options: RunOptions,
    progress: Progress | None,
) -> dict[str, TargetResult]:
    """Each plan applied to a copy of its config (a run dir each), run, then removed."""
    folders: list[Path] = []
    try:
        copies = []
        for prepared, plan, checks in work:
            folders.append(make_run_dir("fix", keep=options.keep_run_dirs))
            copies.append(_copy(prepared, plan, folders[-1], checks))
        after = await run_targets(copies, options, progress)
    finally:
        for folder in folders:
            remove_run_dir(folder)
    return {t.id: t for t in after.targets}


def _extend(
    target: str,
    prepared: Prepared,
    plans: dict[str, Plan],
    before: TargetResult,
    after: TargetResult | None,
) -> bool:
    """Add to ``plans[target]`` the changes for what the re-run still shows failing among
    the checks that must pass; True when something was added (the copy runs again)."""
    if after is None or after.status != TargetStatus.OK:
        return False
    plan = plans[target]
    must = set(_rerun(before, plan))
    failing = [f for f in findings_of(after) if f.check in must]
    if not failing:
        return False
    current = {path: plan.files.get(path, text) for path, text in prepared.files.items()}
    more = PLANNERS[prepared.spec.proxy].plan(current, failing)
    if more.empty:
        return False
    plans[target] = _merged(prepared.files, plan, more)
    return True


def _merged(originals: Mapping[Path, str], first: Plan, more: Plan) -> Plan:
    """``more`` (planned on ``first``'s text) after ``first``: its lines mapped back to
    the original text, refusals of checks it now changes dropped."""
    changes = [*first.changes]
    for change in more.changes:
        patched = first.files.get(change.file)
        line = change.line if patched is None else _original_line(
            originals[change.file], patched, change.line
        )  # fmt: skip
        changes.append(replace(change, line=line))
    addressed = {c for change in changes for c in change.checks}
    refusals = [r for r in (*first.refusals, *more.refusals) if r.check not in addressed]
    unique = list(dict.fromkeys(refusals))
    return Plan({**first.files, **more.files}, tuple(changes), tuple(unique))


def _original_line(original: str, patched: str, line: int) -> int:
    """The line of ``original`` that line ``line`` of ``patched`` is (or follows)."""
    matcher = difflib.SequenceMatcher(
        None, original.splitlines(), patched.splitlines(), autojunk=False
    )
    for tag, i1, _, j1, j2 in matcher.get_opcodes():
        if j1 < line <= j2:
            return i1 + (line - j1) if tag == "equal" else max(i1, 1)
    return max(1, len(original.splitlines()))


def _require_writable(prepared: Iterable[Prepared]) -> None:
    for item in prepared:
        for path in item.files:
            problem = writable_problem(path)
            if problem is not None:
                raise UsageError(
                    f"--write cannot change this file: {problem}",
                    file=path,
                    fix="run without --write to see the proven patch, or fix a copy you own",
                )


def _plan(prepared: Prepared, before: TargetResult) -> Plan:
    return PLANNERS[prepared.spec.proxy].plan(prepared.files, findings_of(before))


def _addressed(plan: Plan) -> set[str]:
    return {check for change in plan.changes for check in change.checks}


def _rerun(before: TargetResult, plan: Plan) -> list[str]:
    """What runs on the patched copy: every check a change addresses, every one that
    passed, and every one that could not be judged (it may judge now)."""
    addressed = _addressed(plan)
    again = (Verdict.PASS, Verdict.ERROR)
    return [r.check for r in before.results if r.check in addressed or r.verdict in again]


def _copy(prepared: Prepared, plan: Plan, folder: Path, checks: list[str]) -> TargetSpec:
    """The patched config in ``folder``, laid out as the run lays out the original."""
    for path, text in prepared.files.items():
        dest = folder / prepared.dests[path]
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(plan.files.get(path, text).encode("utf-8"))
    given = tuple(
        folder / prepared.dests[p] for p in list(prepared.files)[: len(prepared.spec.configs)]
    )
    return replace(prepared.spec, configs=given, checks=tuple(checks))


def _judge(
    before: TargetResult,
    prepared: Prepared,
    plan: Plan | None,
    after: TargetResult | None,
    rounds: int = 1,
) -> TargetFix:
    if before.status != TargetStatus.OK or plan is None:
        why = before.reason or "the target did not run"
        return TargetFix(before.id, FixStatus.NOT_MEASURED, f"not measured: {why}")
    broken = [r for r in before.results if r.verdict in _BROKEN]
    errors = [r.check for r in before.results if r.verdict == Verdict.ERROR]
    refusals = tuple(FixRefusal(r.check, r.reason, r.remedy, r.proposal) for r in plan.refusals)
    unjudged = (
        f"; {len(errors)} check(s) could not be judged ({', '.join(errors)}): run again"
        if errors
        else ""
    )
    if not broken:
        status = FixStatus.NOT_MEASURED if errors else FixStatus.NOTHING
        rows = tuple(FixRow(r.check, r.verdict, None, False, r.summary) for r in before.results)
        said = f"nothing to fix: every check that ran passed{unjudged}"
        return TargetFix(before.id, status, said, rows=rows, refusals=refusals)
    addressed = _addressed(plan)
    if plan.empty:
        rows = tuple(FixRow(r.check, r.verdict, None, False, r.summary) for r in before.results)
        said = (
            f"{len(broken)} check(s) failed or degraded, none with a config change here: "
            f"see what each needs{unjudged}"
        )
        return TargetFix(before.id, FixStatus.NO_CONFIG_CHANGE, said, rows=rows, refusals=refusals)
    again = {r.check: r for r in after.results} if after else {}
    partial = addressed & {r.check for r in plan.refusals}
    rows = tuple(
        _row(r, again.get(r.check), r.check in addressed, r.check in partial)
        for r in before.results
    )
    in_part = [row.check for row in rows if row.outcome == "fixed in part"]
    changes = tuple(
        FixChange(
            _shown(c.file), c.line, c.knob, c.checks, c.why,
            proven=all(_passed(again.get(check)) or check in in_part for check in c.checks),
        )
        for c in plan.changes
    )  # fmt: skip
    originals = {p: prepared.files[p] for p in plan.files}
    patch = "".join(_diff(p, originals[p], text) for p, text in plan.files.items())
    files = tuple(ConfigFile(_shown(p), text) for p, text in plan.files.items())
    needed = [row for row in rows if row.addressed or row.before == Verdict.PASS]
    failed = [row for row in needed if row.after != Verdict.PASS and row.check not in in_part]
    left = sorted({r.check for r in broken} - addressed)
    # Checks the first run could not judge count once the copy judged them pass.
    unknown = [r.check for r in rows if r.before == Verdict.ERROR and r.after != Verdict.PASS]
    fixed = sum(1 for row in rows if row.outcome == "fixed")
    kept = sum(1 for row in rows if row.outcome == "kept")
    if after is None or after.status != TargetStatus.OK:
        reason = (after.reason if after else None) or "the patched copy did not run"
        status, said = FixStatus.UNPROVEN, f"unproven: the patched config did not run: {reason}"
    elif failed:
        status = FixStatus.UNPROVEN
        said = "unproven: " + "; ".join(f"{row.check} {row.outcome}" for row in failed)
    else:
        status = FixStatus.PROVEN_IN_PART if left or unknown or in_part else FixStatus.PROVEN
        said = (
            f"proven: {fixed} check(s) fixed by {len(changes)} change(s), "
            f"{kept} that passed still pass"
        )
        if in_part:
            said += (
                f"; {len(in_part)} fixed in part, the rest without a config change "
                f"({', '.join(in_part)})"
            )
        if left:
            said += f"; {len(left)} left without a config change ({', '.join(left)})"
        if unknown:
            said += f"; {len(unknown)} not judged in either run ({', '.join(unknown)}): run again"
    if rounds > 1:
        said += (
            f" ({rounds} runs of the patched copy: each added what the last one showed "
            "failing once the traffic got further)"
        )
    return TargetFix(
        before.id, status, said, patch=patch, files=files, changes=changes,
        refusals=refusals, rows=rows, after=after,
    )  # fmt: skip


def _passed(result: CheckResult | None) -> bool:
    return result is not None and result.verdict == Verdict.PASS


def _row(
    before: CheckResult, after: CheckResult | None, addressed: bool, partial: bool = False
) -> FixRow:
    """``partial``: the plan changed part of this check's cause and refused the rest; the
    change is proven when the re-run shows only another kind (the refused part)."""
    summary = after.summary if after is not None else before.summary
    gone = (
        partial
        and after is not None
        and after.verdict in _BROKEN
        and before.failure is not None
        and after.failure is not None
        and after.failure != before.failure
    )
    return FixRow(
        before.check,
        before.verdict,
        None if after is None else after.verdict,
        addressed,
        summary,
        cause_gone=gone,
    )


def _shown(path: Path) -> str:
    """``path`` as a person would type it here: relative to the current folder if under it."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def _diff(path: Path, before: str, after: str) -> str:
    """The diff with ``a/`` and ``b/`` before the path as shown (``patch -p1`` applies it
    here, or from / for a file outside this folder)."""
    return unified_diff(Path(_shown(path).lstrip("/")), before, after)


def _write(fix: TargetFix, prepared: Prepared, plan: Plan) -> TargetFix:
    """Apply the proven ``plan`` to the user's files, each original kept beside as a backup.

    A file that changed since the run read it is left alone (the proof was of the text
    read), and so is every other file of the target: the plan is applied whole or not.
    """
    for path in plan.files:
        try:
            now = read_template(path)
        except UsageError:
            now = None
        if now != prepared.files[path]:
            return replace(
                fix,
                summary=f"{fix.summary}; NOT written: {_shown(path)} changed since it was read "
                "(run proxytest fix again)",
            )
    written, backups = [], []
    for path, text in plan.files.items():
        real = path.resolve()  # through a symlink: the link stays, its file changes
        backup = _backup(real)
        written.append(_shown(path))
        backups.append(_shown(backup))
        _replace(real, text)
    return replace(
        fix,
        summary=f"{fix.summary}; written (backup: {', '.join(backups)})",
        written=tuple(written),
        backups=tuple(backups),
    )


def _backup(path: Path) -> Path:
    """Copy ``path`` to a new ``<name>.bak`` (``.bak.1``, … when taken) beside it."""
    for n in range(_MAX_BACKUPS):
        backup = path.with_name(path.name + BACKUP_SUFFIX + (f".{n}" if n else ""))
        try:
            with open(backup, "xb") as out, open(path, "rb") as original:
                shutil.copyfileobj(original, out)
        except FileExistsError:
            continue
        shutil.copymode(path, backup)
        return backup
    raise UsageError(
        f"{_MAX_BACKUPS} backups of this file exist already",
        file=path,
        fix=f"remove old {path.name}{BACKUP_SUFFIX}.* files",
    )


def _replace(path: Path, text: str) -> None:
    """Replace ``path``'s content atomically (a temp file beside it, then a rename)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".proxytest", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(text.encode("utf-8"))
        shutil.copymode(path, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
