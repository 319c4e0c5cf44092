"""Terminal output of the client commands: live progress of an operation, release status,
validation reports and dry-run plans."""

from __future__ import annotations

import sys
import time
from typing import Any

import httpx

EXIT_OK, EXIT_FAILED, EXIT_REFUSED = 0, 1, 2
_TERMINAL = {"SUCCEEDED", "FAILED", "CANCELLED"}
_MARKS = {
    "RUNNING": "..",
    "SUCCEEDED": "ok",
    "FAILED": "!!",
    "SKIPPED": "--",
    "CANCELLED": "xx",
}


def report_refusal(response: httpx.Response) -> int:
    """Print a refused request's problem details; exit code 2."""
    try:
        body = response.json()
    except ValueError:
        body = {"detail": response.text}
    print(f"refused ({response.status_code}): {body.get('detail', '')}", file=sys.stderr)
    for error in body.get("errors") or []:
        print(f"  - {error.get('path')}: {error.get('message')}", file=sys.stderr)
    if body.get("operationId"):
        print(f"  active operation: {body['operationId']}", file=sys.stderr)
    return EXIT_REFUSED


def follow(
    client: httpx.Client,
    operation: dict[str, Any],
    *,
    wait: bool,
    interval: float = 0.5,
    out: Any = None,
) -> int:
    """Print the operation; with ``wait``, print each task transition until it ends.

    Returns 0 if the operation succeeded (or was only submitted), 1 otherwise.
    """
    out = out or sys.stdout
    operation_id = operation["id"]
    print(
        f"{operation['type']} {operation['deploymentUnitId']} in {operation['environment']}: "
        f"operation {operation_id} ({len(operation['tasks'])} tasks)",
        file=out,
    )
    for warning in operation.get("warnings") or []:
        print(f"warning: {warning.get('path')}: {warning.get('message')}", file=sys.stderr)
    if not wait:
        print(f"follow it: GET /v1/operations/{operation_id}", file=out)
        return EXIT_OK
    after, status = 0, operation["status"]
    while status not in _TERMINAL:
        events = _events(client, operation_id, after)
        for event in events:
            after = event["id"]
            _print_event(event, out)
            if event["componentId"] is None:
                status = event["newStatus"]
        if status not in _TERMINAL:
            time.sleep(interval)
    final = client.get(f"/v1/operations/{operation_id}").json()
    _print_summary(final, out)
    return EXIT_OK if final["status"] == "SUCCEEDED" else EXIT_FAILED


def _events(client: httpx.Client, operation_id: str, after: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 60
    while True:
        try:
            response = client.get(f"/v1/operations/{operation_id}/events", params={"after": after})
            response.raise_for_status()
            items: list[dict[str, Any]] = response.json()["items"]
            return items
        except httpx.HTTPError as exc:
            if time.monotonic() > deadline:
                raise SystemExit(f"lost contact with the server: {exc}") from None
            time.sleep(1)


def _print_event(event: dict[str, Any], out: Any) -> None:
    clock = event["at"][11:19]
    new = event["newStatus"]
    detail = event.get("detail") or {}
    if event["componentId"] is None:
        print(f"{clock}  operation {new}", file=out)
        return
    if "token" in detail:
        return  # polling started; nothing the user needs to see
    if isinstance(detail.get("validation"), dict):
        verdict = detail["validation"]
        valid = bool(verdict.get("valid"))
        reasons = "; ".join(str(error) for error in verdict.get("errors") or [])
        mark, word = ("ok", "valid") if valid else ("!!", "invalid")
        print(
            f"{clock}  {mark} {word:<9} {event['componentId']}{'  ' + reasons if reasons else ''}",
            file=out,
        )
        return
    note = ""
    if detail.get("error"):
        note = f"  {detail['error']}"
    elif detail.get("blockedBy"):
        note = f"  (blocked by {detail['blockedBy']})"
    elif detail.get("refusedBy"):
        note = f"  (not run: {detail['refusedBy']} failed)"
    elif detail.get("resent"):
        note = "  (sent again after a restart)"
    print(f"{clock}  {_MARKS.get(new, '  ')} {new:<9} {event['componentId']}{note}", file=out)


def _print_summary(operation: dict[str, Any], out: Any) -> None:
    counts: dict[str, int] = {}
    for task in operation["tasks"]:
        counts[task["status"]] = counts.get(task["status"], 0) + 1
    summary = ", ".join(f"{count} {status.lower()}" for status, count in sorted(counts.items()))
    print(f"operation {operation['status']}: {summary}", file=out)
    if operation.get("error"):
        print(f"  {operation['error']}", file=out)


def print_release(release: dict[str, Any], out: Any = None) -> None:
    out = out or sys.stdout
    print(
        f"{release['deploymentUnitId']} in {release['environment']}: {release['status']}"
        f" (version {release.get('version') or '-'}, last operation "
        f"{release.get('lastOperationId') or '-'})",
        file=out,
    )
    width = max((len(c["componentId"]) for c in release["components"]), default=10)
    for component in release["components"]:
        last = component.get("lastOperation") or {}
        version = component.get("version") or "-"
        print(
            f"  {component['componentId']:<{width}}  {component['status']:<13} {version:<10}"
            f" {last.get('type', '')} {last.get('status', '')}",
            file=out,
        )


_CHANGE_MARKS = {"CREATE": "+", "UPDATE": "~", "UNCHANGED": "=", "DELETE": "-"}


def print_plan(answer: dict[str, Any], out: Any = None) -> None:
    """A dry run's plan, in the order it would run, each step marked with its change."""
    out = out or sys.stdout
    plan = answer["plan"]
    version = f" {plan['version']}" if plan.get("version") else ""
    print(
        f"{plan['type']} {plan['deploymentUnitId']}{version} in {plan['environment']} "
        "(dry run: nothing was changed)\n",
        file=out,
    )
    counts = dict.fromkeys(_CHANGE_MARKS, 0)
    for step in plan["steps"]:
        change = step["change"]
        counts[change] = counts.get(change, 0) + 1
        current = step.get("currentVersion") or "-"
        target = step.get("targetVersion") or "-"
        versions = current if change == "UNCHANGED" else f"{current} -> {target}"
        print(
            f"  {_CHANGE_MARKS.get(change, '?')} {change:<9} {step['componentId']}  "
            f"({step['currentStatus']}, {versions})",
            file=out,
        )
        if step.get("dependsOn"):
            print(f"      after {', '.join(step['dependsOn'])}", file=out)
    for warning in answer.get("warnings") or []:
        print(f"warning: {warning.get('path')}: {warning.get('message')}", file=sys.stderr)
    print(
        f"\nPlan: {counts['CREATE']} to create, {counts['UPDATE']} to update, "
        f"{counts['UNCHANGED']} unchanged, {counts['DELETE']} to delete.",
        file=out,
    )


def print_validation(report: dict[str, Any], out: Any = None) -> int:
    """Every problem of a validation report; 0 when it is valid, 1 otherwise."""
    out = out or sys.stdout
    components = report.get("components") or []
    for item in components:
        if not item.get("valid"):
            errors = item.get("errors") or ["(no reason given)"]
            for error in errors:
                print(f"invalid: {item['componentId']}: {error}", file=out)
    for denial in report.get("denials") or []:
        print(f"denied: {denial.get('path')}: {denial.get('message')}", file=out)
    for warning in report.get("warnings") or []:
        print(f"warning: {warning.get('path')}: {warning.get('message')}", file=out)
    invalid = sum(not item.get("valid") for item in components)
    denials = len(report.get("denials") or [])
    verdict = "valid" if report.get("valid") else "INVALID"
    print(
        f"{verdict} for {report.get('environment') or '-'}: {len(components)} checked by their "
        f"Tech Adapter ({invalid} invalid), {denials} policy denial(s)",
        file=out,
    )
    return EXIT_OK if report.get("valid") else EXIT_FAILED
