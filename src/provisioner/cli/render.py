"""What the client commands print: release status, validation reports, dry-run plans,
operations, events and tables. Text from the server (and so from descriptors and adapters) is
printed as text: control characters are replaced, and rich never reads it as markup."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable, Sequence
from typing import IO, Any

from rich.console import Console
from rich.table import Table

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_MARKS = {
    "RUNNING": "..",
    "SUCCEEDED": "ok",
    "FAILED": "!!",
    "SKIPPED": "--",
    "CANCELLED": "xx",
}
_CHANGE_MARKS = {"CREATE": "+", "UPDATE": "~", "UNCHANGED": "=", "DELETE": "-"}


def clean(value: object) -> str:
    """``value`` as one printable line: an adapter's message cannot move the cursor, clear
    the screen or colour the terminal."""
    text = "" if value is None else str(value)
    return _CONTROL.sub("?", text.replace("\n", " ").replace("\t", " "))


def console(*, stderr: bool = False) -> Console:
    """A console that never reads markup; wide enough off a terminal that lines never wrap
    (pipelines grep them), and without colour there."""
    out = sys.stderr if stderr else sys.stdout
    terminal = out.isatty()
    return Console(
        file=out,
        markup=False,
        highlight=False,
        emoji=False,
        width=None if terminal else 10_000,
        force_terminal=terminal,
        no_color=not terminal,
    )


def table(
    headers: Sequence[str],
    rows: Iterable[Sequence[object]],
    *,
    flexible: int | None = None,
    width: int | None = None,
) -> Table:
    """Plain columns: a header line, then one line per row, no borders. Within ``width``,
    only the ``flexible`` column (a message) is cut short; the others keep their width."""
    cells = [[clean(cell) if cell not in (None, "") else "-" for cell in row] for row in rows]
    widths = [
        max([len(header), *(len(row[i]) for row in cells)]) for i, header in enumerate(headers)
    ]
    grid = Table(box=None, pad_edge=False, padding=(0, 2, 0, 0), show_edge=False)
    for index, header in enumerate(headers):
        if index == flexible:
            others = sum(w + 2 for i, w in enumerate(widths) if i != index)
            room = None if width is None else max(width - others - 1, 10)
            grid.add_column(header, no_wrap=True, overflow="ellipsis", max_width=room)
        else:
            grid.add_column(header, no_wrap=True, min_width=widths[index])
    for row in cells:
        grid.add_row(*row)
    return grid


def show(grid: Table) -> None:
    """Print a table on stdout; off a terminal, without the padding after each line's end."""
    out = console()
    if out.is_terminal:
        out.print(grid)
        return
    with out.capture() as captured:
        out.print(grid)
    for line in captured.get().splitlines():
        print(line.rstrip())


def print_json(value: Any, out: IO[str] | None = None) -> None:
    """One JSON document on stdout: what ``-o json`` promises."""
    print(json.dumps(value, indent=2, ensure_ascii=False), file=out or sys.stdout)


def clock(moment: str | None) -> str:
    """``HH:MM:SS`` of an RFC 3339 time."""
    return moment[11:19] if moment and len(moment) >= 19 else "--:--:--"


def when(moment: str | None) -> str:
    """An RFC 3339 time to the second."""
    return moment[:19].replace("T", " ") if moment else "-"


def event_note(detail: dict[str, Any]) -> str:
    """What an event's detail says to a person (the adapter's message, why a task did not
    run), empty when it says nothing worth a line."""
    if isinstance(detail.get("validation"), dict):
        return "; ".join(clean(error) for error in detail["validation"].get("errors") or [])
    if detail.get("error"):
        return clean(detail["error"])
    if detail.get("blockedBy"):
        return f"(blocked by {clean(detail['blockedBy'])})"
    if detail.get("refusedBy"):
        return f"(not run: {clean(detail['refusedBy'])} failed)"
    if detail.get("resent"):
        return "(sent again after a restart)"
    return ""


def event_line(event: dict[str, Any]) -> str | None:
    """One event as a line of progress (None: nothing a person needs to see)."""
    at = clock(event.get("at"))
    new = clean(event.get("newStatus"))
    detail = event.get("detail") or {}
    component = event.get("componentId")
    if component is None:
        return f"{at}  operation {new}"
    component = clean(component)
    if "token" in detail:
        return None  # polling started
    note = event_note(detail)
    if isinstance(detail.get("validation"), dict):
        valid = bool(detail["validation"].get("valid"))
        mark, word = ("ok", "valid") if valid else ("!!", "invalid")
        return f"{at}  {mark} {word:<9} {component}{'  ' + note if note else ''}"
    return f"{at}  {_MARKS.get(new, '  ')} {new:<9} {component}{'  ' + note if note else ''}"


def operation_heading(operation: dict[str, Any]) -> str:
    return (
        f"{clean(operation['type'])} {clean(operation['deploymentUnitId'])} in "
        f"{clean(operation['environment'])}: operation {clean(operation['id'])} "
        f"({len(operation.get('tasks') or [])} tasks)"
    )


def summary(operation: dict[str, Any]) -> list[str]:
    """The last lines of a wait: the final status with its tasks counted, and the error."""
    counts: dict[str, int] = {}
    for task in operation.get("tasks") or []:
        counts[task["status"]] = counts.get(task["status"], 0) + 1
    tally = ", ".join(f"{count} {status.lower()}" for status, count in sorted(counts.items()))
    lines = [f"operation {clean(operation['status'])}: {tally}"]
    if operation.get("error"):
        lines.append(f"  {clean(operation['error'])}")
    return lines


def warnings(items: Iterable[dict[str, Any]], out: IO[str] | None = None) -> None:
    for warning in items:
        print(
            f"warning: {clean(warning.get('path'))}: {clean(warning.get('message'))}",
            file=out or sys.stderr,
        )


def print_release(release: dict[str, Any], out: IO[str] | None = None) -> None:
    out = out or sys.stdout
    print(
        f"{clean(release['deploymentUnitId'])} in {clean(release['environment'])}: "
        f"{clean(release['status'])} (version {clean(release.get('version') or '-')}, "
        f"last operation {clean(release.get('lastOperationId') or '-')})",
        file=out,
    )
    if release.get("statusReason"):
        print(f"  {clean(release['statusReason'])}", file=out)
    width = max((len(clean(c["componentId"])) for c in release["components"]), default=10)
    for component in release["components"]:
        last = component.get("lastOperation") or {}
        version = clean(component.get("version") or "-")
        print(
            f"  {clean(component['componentId']):<{width}}  {clean(component['status']):<13} "
            f"{version:<10} {clean(last.get('type', ''))} {clean(last.get('status', ''))}".rstrip(),
            file=out,
        )


def print_plan(answer: dict[str, Any], out: IO[str] | None = None) -> None:
    """A dry run's plan, in the order it would run, each step marked with its change."""
    out = out or sys.stdout
    plan = answer["plan"]
    version = f" {clean(plan['version'])}" if plan.get("version") else ""
    print(
        f"{clean(plan['type'])} {clean(plan['deploymentUnitId'])}{version} in "
        f"{clean(plan['environment'])} (dry run: nothing was changed)\n",
        file=out,
    )
    counts = dict.fromkeys(_CHANGE_MARKS, 0)
    for step in plan["steps"]:
        change = step["change"]
        counts[change] = counts.get(change, 0) + 1
        current = clean(step.get("currentVersion") or "-")
        target = clean(step.get("targetVersion") or "-")
        versions = current if change == "UNCHANGED" else f"{current} -> {target}"
        print(
            f"  {_CHANGE_MARKS.get(change, '?')} {change:<9} {clean(step['componentId'])}  "
            f"({clean(step['currentStatus'])}, {versions})",
            file=out,
        )
        if step.get("dependsOn"):
            print(f"      after {', '.join(clean(d) for d in step['dependsOn'])}", file=out)
    warnings(answer.get("warnings") or [])
    print(
        f"\nPlan: {counts['CREATE']} to create, {counts['UPDATE']} to update, "
        f"{counts['UNCHANGED']} unchanged, {counts['DELETE']} to delete.",
        file=out,
    )


def print_validation(report: dict[str, Any], out: IO[str] | None = None) -> bool:
    """Every problem of a validation report; whether it is valid."""
    out = out or sys.stdout
    components = report.get("components") or []
    for item in components:
        if not item.get("valid"):
            for error in item.get("errors") or ["(no reason given)"]:
                print(f"invalid: {clean(item['componentId'])}: {clean(error)}", file=out)
    for denial in report.get("denials") or []:
        print(f"denied: {clean(denial.get('path'))}: {clean(denial.get('message'))}", file=out)
    warnings(report.get("warnings") or [], out)
    invalid = sum(not item.get("valid") for item in components)
    denials = len(report.get("denials") or [])
    verdict = "valid" if report.get("valid") else "INVALID"
    print(
        f"{verdict} for {clean(report.get('environment') or '-')}: {len(components)} checked "
        f"by their Tech Adapter ({invalid} invalid), {denials} policy denial(s)",
        file=out,
    )
    return bool(report.get("valid"))


def operation_table(operation: dict[str, Any], *, width: int | None = None) -> Table:
    """An operation's tasks: component, action, status, attempts, times and error."""
    rows = []
    for task in operation.get("tasks") or []:
        error = (task.get("error") or {}).get("message")
        validation = task.get("validation") or {}
        if not error and validation.get("valid") is False:
            error = "invalid: " + "; ".join(clean(e) for e in validation.get("errors") or [])
        rows.append(
            (
                task["componentId"],
                task["action"],
                task["status"],
                task.get("attempts"),
                clock(task.get("startedAt")) if task.get("startedAt") else None,
                clock(task.get("finishedAt")) if task.get("finishedAt") else None,
                error,
            )
        )
    headers = ("COMPONENT", "ACTION", "STATUS", "ATTEMPTS", "STARTED", "FINISHED", "ERROR")
    return table(headers, rows, flexible=6, width=width)


def operation_lines(operation: dict[str, Any]) -> list[str]:
    """The operation's own fields, one ``name: value`` per line."""
    fields = [
        ("operation", operation["id"]),
        ("type", operation["type"]),
        ("unit", operation["deploymentUnitId"]),
        ("environment", operation["environment"]),
        ("version", operation.get("version")),
        ("status", operation["status"]),
        ("requested by", operation.get("requestedBy")),
        ("created", when(operation.get("createdAt"))),
        ("finished", when(operation.get("finishedAt"))),
    ]
    if operation.get("retryOf"):
        fields.append(("retry of", operation["retryOf"]))
    if operation.get("cancelRequested"):
        fields.append(("cancel requested", "yes"))
    if operation.get("error"):
        fields.append(("error", operation["error"]))
    return [f"{name + ':':<14}{clean(value) if value else '-'}" for name, value in fields]
