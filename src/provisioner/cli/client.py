"""The client commands: each speaks HTTP to a running service (``--url``, ``--token``)."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from provisioner.cli.exits import CommandError, Exit
from provisioner.cli.follow import TERMINAL, progress_for, wait_for
from provisioner.cli.http import DEFAULT_URL, Api, Server, path_part, release_path
from provisioner.cli.options import (
    ComponentsOption,
    DescriptorArgument,
    EnvOption,
    Output,
    OutputOption,
    RequiredEnv,
    TimeoutOption,
    TokenOption,
    UrlOption,
    WaitForLockOption,
    WaitOption,
)
from provisioner.cli.render import (
    clean,
    console,
    event_line,
    operation_lines,
    operation_table,
    print_json,
    print_release,
    show,
    table,
    when,
)
from provisioner.cli.submit import (
    DRY_RUN,
    Deadline,
    lock_seconds,
    post_descriptor,
    read_descriptor,
    report,
    show_plan,
    show_validation,
    submit,
    undeploy_body,
    unit_of,
)

Unit = Annotated[str, typer.Argument(metavar="UNIT", help="The deployment unit id.")]
OperationId = Annotated[str, typer.Argument(metavar="ID", help="The operation id.")]
Limit = Annotated[int, typer.Option("--limit", min=1, max=500, help="At most this many.")]
Cursor = Annotated[
    str | None,
    typer.Option("--cursor", help="Start after this page (nextCursor).", show_default=False),
]


def deploy(
    file: DescriptorArgument,
    env: EnvOption = None,
    component: ComponentsOption = None,
    wait: WaitOption = False,
    wait_for_lock: WaitForLockOption = None,
    timeout: TimeoutOption = None,
    output: OutputOption = Output.text,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
) -> Exit:
    """Deploy a descriptor file (all its components, or those named)."""
    content = read_descriptor(file)
    server, deadline = Server(url, token), Deadline(timeout)
    with Api(server) as api:
        answer = submit(
            server,
            api,
            lambda: post_descriptor(
                api, "/v1/deployments", content, environment=env, components=component
            ),
            lock=lock_seconds(wait_for_lock),
            deadline=deadline,
        )
    return report(server, answer.json(), wait=wait, output=output, deadline=deadline)


def undeploy(
    unit: Unit,
    env: RequiredEnv,
    remove_data: Annotated[bool, typer.Option(help="Also delete the data.")] = False,
    component: ComponentsOption = None,
    ignore_missing: Annotated[
        bool, typer.Option(help="Exit 0 when nothing is deployed there (404).")
    ] = False,
    wait: WaitOption = False,
    wait_for_lock: WaitForLockOption = None,
    timeout: TimeoutOption = None,
    output: OutputOption = Output.text,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
) -> Exit:
    """Undeploy a deployment unit (or some of its components) from an environment."""
    server, deadline = Server(url, token), Deadline(timeout)
    body = undeploy_body(unit, env, remove_data=remove_data, components=component)
    with Api(server) as api:
        try:
            answer = submit(
                server,
                api,
                lambda: api.call("POST", "/v1/undeployments", json=body, expect=(202,)),
                lock=lock_seconds(wait_for_lock),
                deadline=deadline,
            )
        except CommandError as exc:
            if not (ignore_missing and exc.problem.get("status") == 404):
                raise
            print(f"nothing to do: {clean(exc.problem.get('detail'))}", file=sys.stderr)
            if output is Output.json:
                print_json(None)
            return Exit.OK
    return report(server, answer.json(), wait=wait, output=output, deadline=deadline)


def plan(
    file: DescriptorArgument,
    env: EnvOption = None,
    undeploy: Annotated[bool, typer.Option("--undeploy", help="Plan the unit's undeploy.")] = False,
    remove_data: Annotated[bool, typer.Option(help="Undeploy: delete the data.")] = False,
    component: ComponentsOption = None,
    wait_for_lock: WaitForLockOption = None,
    timeout: TimeoutOption = None,
    output: OutputOption = Output.text,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
) -> Exit:
    """Show what a deploy (or undeploy) would do, changing nothing (a dry run)."""
    content = read_descriptor(file)
    server = Server(url, token)
    if undeploy:
        unit, environment = unit_of(file, content, env)
        body = undeploy_body(unit, environment, remove_data=remove_data, components=component)
    with Api(server) as api:

        def send() -> Any:
            if undeploy:
                return api.call("POST", "/v1/undeployments", json=body, params=DRY_RUN)
            return post_descriptor(
                api,
                "/v1/deployments",
                content,
                environment=env,
                components=component,
                params=DRY_RUN,
                expect=(200,),
            )

        answer = submit(
            server, api, send, lock=lock_seconds(wait_for_lock), deadline=Deadline(timeout)
        )
    return show_plan(answer.json(), output)


def validate(
    file: DescriptorArgument,
    env: EnvOption = None,
    output: OutputOption = Output.text,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
) -> Exit:
    """Check a descriptor as a deploy would: the service's rules, its policies and every
    component's Tech Adapter. Exit 1 when it is invalid."""
    content = read_descriptor(file)
    with Api(Server(url, token), timeout=600) as api:
        answer = post_descriptor(
            api, "/v1/validations", content, environment=env, components=None, expect=(200,)
        )
    return show_validation(answer.json(), output)


def status(
    unit: Unit,
    env: RequiredEnv,
    check: Annotated[
        bool, typer.Option("--check", help="Exit 1 unless the release is DEPLOYED.")
    ] = False,
    output: OutputOption = Output.text,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
) -> Exit:
    """Show a deployment unit's release in one environment, with its components."""
    with Api(Server(url, token)) as api:
        release = api.json("GET", release_path(unit, env))
    if output is Output.json:
        print_json(release)
    else:
        print_release(release)
    if check and release["status"] != "DEPLOYED":
        print(
            f"{clean(unit)} in {clean(env)} is {clean(release['status'])}, not DEPLOYED",
            file=sys.stderr,
        )
        return Exit.FAILED
    return Exit.OK


def releases(
    env: Annotated[str | None, typer.Option("--env", metavar="ENV", help="Only this one.")] = None,
    status_: Annotated[
        str | None,
        typer.Option("--status", metavar="STATUS", help="Only releases in this status."),
    ] = None,
    limit: Limit = 100,
    cursor: Cursor = None,
    output: OutputOption = Output.text,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
) -> Exit:
    """List releases: every deployment unit in every environment."""
    params = {"environment": env, "status": status_, "limit": limit, "cursor": cursor}
    with Api(Server(url, token)) as api:
        page = api.json("GET", "/v1/releases", params=_given(params))
    if output is Output.json:
        print_json(page)
        return Exit.OK
    rows = [
        (
            item["deploymentUnitId"],
            item["environment"],
            item["status"],
            item.get("version"),
            item.get("lastOperationId"),
            when(item.get("updatedAt")),
        )
        for item in page["items"]
    ]
    headers = ("UNIT", "ENVIRONMENT", "STATUS", "VERSION", "LAST OPERATION", "UPDATED")
    show(table(headers, rows))
    _more(page)
    return Exit.OK


def operations(
    unit: Annotated[
        str | None, typer.Option("--unit", metavar="UNIT", help="Only this deployment unit.")
    ] = None,
    env: Annotated[str | None, typer.Option("--env", metavar="ENV", help="Only this one.")] = None,
    status_: Annotated[
        str | None,
        typer.Option("--status", metavar="STATUS", help="Only operations in this status."),
    ] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
    output: OutputOption = Output.text,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
) -> Exit:
    """List operations, newest first."""
    params = {
        "deploymentUnitId": unit,
        "environment": env,
        "status": status_,
        "limit": limit,
        "cursor": cursor,
    }
    with Api(Server(url, token)) as api:
        page = api.json("GET", "/v1/operations", params=_given(params))
    if output is Output.json:
        print_json(page)
        return Exit.OK
    rows = [
        (
            item["id"],
            item["type"],
            item["deploymentUnitId"],
            item["environment"],
            item["status"],
            when(item.get("createdAt")),
            item.get("requestedBy"),
        )
        for item in page["items"]
    ]
    headers = ("ID", "TYPE", "UNIT", "ENVIRONMENT", "STATUS", "CREATED", "REQUESTED BY")
    show(table(headers, rows))
    _more(page)
    return Exit.OK


def operation(
    operation_id: OperationId,
    output: OutputOption = Output.text,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
) -> Exit:
    """Show an operation and its tasks."""
    with Api(Server(url, token)) as api:
        found = api.json("GET", f"/v1/operations/{path_part(operation_id)}")
    if output is Output.json:
        print_json(found)
        return Exit.OK
    for line in operation_lines(found):
        print(line)
    for warning in found.get("warnings") or []:
        print(f"warning:      {clean(warning.get('path'))}: {clean(warning.get('message'))}")
    print()
    show(operation_table(found, width=console().width))
    return Exit.OK


def events(
    operation_id: OperationId,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing events until the operation ends.")
    ] = False,
    timeout: TimeoutOption = None,
    output: OutputOption = Output.text,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
) -> Exit:
    """Print an operation's audit trail; with --follow, live until it ends."""
    server = Server(url, token)
    path = f"/v1/operations/{path_part(operation_id)}"
    with Api(server) as api:
        found = api.json("GET", path) if follow else None
        if found is None or found["status"] in TERMINAL:
            page = api.json("GET", f"{path}/events", params={"limit": 10000})
            if found is None and output is Output.json:
                print_json(page)
                return Exit.OK
            # --follow on an operation that has ended already: its whole trail, as it would
            # have been followed (one event per line), then done.
            printer = _EventPrinter(output)
            for item in page["items"]:
                printer.event(item)
            return Exit.OK
    wait_for(server, found, progress=_EventPrinter(output), timeout=timeout)
    return Exit.OK


class _EventPrinter:
    """``events --follow``: each event as a line, or as one JSON document per line."""

    def __init__(self, output: Output) -> None:
        self._json = output is Output.json

    def begin(self, operation: dict[str, Any]) -> None:
        pass

    def event(self, event: dict[str, Any]) -> None:
        if self._json:
            import json

            print(json.dumps(event, ensure_ascii=False), flush=True)
        else:
            print(event_line(event) or f"{event['at'][11:19]}  (polling started)", flush=True)

    def end(self, operation: dict[str, Any]) -> None:
        pass


def wait(
    operation_id: OperationId,
    timeout: TimeoutOption = None,
    output: OutputOption = Output.text,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
) -> Exit:
    """Wait for an operation to end: exit 0 if it succeeded, 1 if it failed or was cancelled."""
    server = Server(url, token)
    with Api(server) as api:
        found = api.json("GET", f"/v1/operations/{path_part(operation_id)}")
    as_json = output is Output.json
    if not as_json:
        print(
            f"{clean(found['type'])} {clean(found['deploymentUnitId'])} in "
            f"{clean(found['environment'])}: operation {clean(found['id'])}",
            flush=True,
        )
    progress = progress_for(output_json=as_json, console=console)
    final = wait_for(server, found, progress=progress, timeout=timeout)
    if as_json:
        print_json(final)
    return Exit.OK if final["status"] == "SUCCEEDED" else Exit.FAILED


def cancel(
    operation_id: OperationId,
    output: OutputOption = Output.text,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
) -> Exit:
    """Ask a pending or running operation to stop (exit 3 if it already ended)."""
    with Api(Server(url, token)) as api:
        found = api.json("POST", f"/v1/operations/{path_part(operation_id)}/cancel", expect=(202,))
    if output is Output.json:
        print_json(found)
    else:
        print(f"cancel requested: operation {clean(found['id'])} is {clean(found['status'])}")
        print(f"follow it: provisioner wait {clean(found['id'])}")
    return Exit.OK


def retry(
    operation_id: OperationId,
    wait: WaitOption = False,
    timeout: TimeoutOption = None,
    output: OutputOption = Output.text,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
) -> Exit:
    """Run again, as a new operation, the tasks of a failed or cancelled one that did not
    succeed."""
    server = Server(url, token)
    with Api(server) as api:
        answer = api.json("POST", f"/v1/operations/{path_part(operation_id)}/retry", expect=(202,))
    return report(server, answer, wait=wait, output=output, deadline=Deadline(timeout))


def _given(params: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in params.items() if value is not None}


def _more(page: dict[str, Any]) -> None:
    if page.get("nextCursor"):
        print(f"more: --cursor {clean(page['nextCursor'])}", file=sys.stderr)
