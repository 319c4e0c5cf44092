"""Commands that change something: deploy, undeploy, retry, cancel; and those that ask what a
change would meet or do (validate, plan), and wait for an operation."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import yaml

from provisioner.cli.exits import CommandError, Exit
from provisioner.cli.follow import Silent, progress_for, wait_for
from provisioner.cli.http import Api, Server, path_part
from provisioner.cli.options import WAIT_FOREVER, Output
from provisioner.cli.render import (
    clean,
    console,
    operation_heading,
    print_json,
    print_plan,
    print_validation,
    warnings,
)

DRY_RUN = {"dryRun": "true"}


class Deadline:
    """The client's ``--timeout``, shared by every wait of one command."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self._end = None if seconds is None else time.monotonic() + seconds

    def remaining(self) -> float | None:
        return None if self._end is None else max(self._end - time.monotonic(), 0.0)


def lock_seconds(value: str | None) -> float | None:
    """``--wait-for-lock``'s value: None (do not wait), a number of seconds, or no limit."""
    if value is None:
        return None
    if value == WAIT_FOREVER:
        return float("inf")
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:
        raise CommandError(
            Exit.REFUSED, f"--wait-for-lock takes a number of seconds, not {value!r}"
        )
    return seconds


def read_descriptor(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CommandError(Exit.REFUSED, f"cannot read {path}: {exc.strerror or exc}") from None


def post_descriptor(
    api: Api,
    path: str,
    content: bytes,
    *,
    environment: str | None,
    components: list[str] | None,
    params: dict[str, str] | None = None,
    expect: tuple[int, ...] = (202,),
) -> httpx.Response:
    """POST a descriptor file: as YAML, or in the JSON envelope when components are chosen."""
    if components:
        try:
            text = content.decode("utf-8")
        except UnicodeDecodeError:
            raise CommandError(Exit.REFUSED, "the descriptor is not UTF-8 text") from None
        body: dict[str, Any] = {"descriptor": text, "components": components}
        if environment:
            body["environment"] = environment
        return api.call("POST", path, json=body, params=params, expect=expect)
    query = {**(params or {}), **({"environment": environment} if environment else {})}
    headers = {"content-type": "application/yaml"}
    return api.call("POST", path, content=content, params=query, headers=headers, expect=expect)


def undeploy_body(
    unit: str, environment: str, *, remove_data: bool, components: list[str] | None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "deploymentUnitId": unit,
        "environment": environment,
        "removeData": remove_data,
    }
    if components:
        body["components"] = components
    return body


def unit_of(path: Path, content: bytes, environment: str | None) -> tuple[str, str]:
    """The unit id a descriptor file describes, and its environment unless ``--env`` says."""
    try:
        document = yaml.safe_load(content)
    except yaml.YAMLError as exc:
        raise CommandError(Exit.REFUSED, f"cannot read {path}: {clean(exc)}") from None
    document = document if isinstance(document, dict) else {}
    unit, environment = document.get("id"), environment or document.get("environment")
    if not isinstance(unit, str) or not isinstance(environment, str):
        raise CommandError(Exit.REFUSED, f"{path} names no unit id, or no environment: give --env")
    return unit, environment


def submit(
    server: Server,
    api: Api,
    send: Callable[[], httpx.Response],
    *,
    lock: float | None,
    deadline: Deadline,
) -> httpx.Response:
    """``send()``'s answer; with ``lock``, a ``409`` for an active operation waits for that
    operation to end (at most ``lock`` seconds, within the deadline) and sends again."""
    started = time.monotonic()
    while True:
        try:
            return send()
        except CommandError as exc:
            active = exc.problem.get("operationId")
            if exc.code is not Exit.BUSY or lock is None or not isinstance(active, str):
                raise
            left = lock - (time.monotonic() - started)
            if left <= 0:
                raise CommandError(
                    Exit.BUSY,
                    f"still busy after waiting {lock:g} s: operation {clean(active)} is active",
                ) from None
            print(f"operation {clean(active)} is active there: waiting for it", file=sys.stderr)
            _wait_out(server, api, active, left, deadline)


def _wait_out(server: Server, api: Api, active: str, left: float, deadline: Deadline) -> None:
    """Wait for the operation holding the lock to end, within ``left`` and the deadline."""
    remaining = deadline.remaining()
    limit = left if remaining is None else min(left, remaining)
    operation = api.json("GET", f"/v1/operations/{path_part(active)}")
    try:
        wait_for(
            server, operation, progress=Silent(), timeout=None if limit == float("inf") else limit
        )
    except CommandError as exc:
        if exc.code is not Exit.TIMEOUT:
            raise
        if remaining is not None and remaining <= left:
            raise CommandError(
                Exit.TIMEOUT,
                f"gave up after {deadline.seconds:g} s: operation {clean(active)} is still active",
            ) from None
        # The lock's own limit passed: the next send says busy, or goes through.


def report(
    server: Server,
    accepted: dict[str, Any],
    *,
    wait: bool,
    output: Output,
    deadline: Deadline,
) -> Exit:
    """An accepted operation: printed, and with ``wait`` followed until it ends."""
    as_json = output is Output.json
    warnings(accepted.get("warnings") or [])
    if not as_json:
        print(operation_heading(accepted), flush=True)
    if not wait:
        if as_json:
            print_json(accepted)
        else:
            print(f"follow it: provisioner wait {clean(accepted['id'])}")
        return Exit.OK
    progress = progress_for(output_json=as_json, console=console)
    final = wait_for(server, accepted, progress=progress, timeout=deadline.remaining())
    if as_json:
        print_json(final)
    return Exit.OK if final["status"] == "SUCCEEDED" else Exit.FAILED


def show_plan(answer: dict[str, Any], output: Output) -> Exit:
    if output is Output.json:
        print_json(answer)
    else:
        print_plan(answer)
    return Exit.OK


def show_validation(report_: dict[str, Any], output: Output) -> Exit:
    if output is Output.json:
        print_json(report_)
        valid = bool(report_.get("valid"))
    else:
        valid = print_validation(report_)
    return Exit.OK if valid else Exit.FAILED
