"""Compiling policies with regopy (rego-cpp), and saying where a policy is wrong.

rego-cpp reports problems in three ways, and each is turned into a file, a line and a message:

- a **syntax error** raises ``RegoError`` from ``add_module``, as an s-expression with the
  file and a *byte offset*: each file is parsed on its own and the offset mapped to a line;
- a **compile error** makes ``build`` return a bundle that is not ok, with the message in its
  nodes but the file and line only in the engine's own log, which it prints on the process's
  standard output;
- an **unknown function** compiles and fails only when a rule calls it: the compiled plan
  (``plan.json`` of the saved bundle, OPA's IR) names every function called with its file, row
  and column, and a name that is neither a built-in nor a rule of ours is refused.

The last two come from a child process that builds the policies again, logging, and saves
the bundle: its standard output is read without touching this process's, and saving a bundle
crashed the interpreter in a process that had loaded greenlet (structlog does), so it is never
done here.

Errors found later, while evaluating, are left to the smoke evaluation of ``engine``.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import regopy
import structlog
from regopy import rego_shared

from provisioner.policies.answers import error_messages
from provisioner.policies.sources import PolicyProblem, PolicySource, refuse

log = structlog.get_logger(__name__)

_PARSE_ERROR = re.compile(r"\(error \d+:(?P<file>[^|\n]+)\|(?P<offset>\d+)\|\d+\s+\(errormsg ")
_LOGGED_ERROR = re.compile(
    r"^(?P<message>[^\n]+)\n-- (?P<file>[^\n]+):(?P<line>\d+):(?P<column>\d+)[ \t]*$",
    re.MULTILINE,
)
# The child process: builds at the log level that prints each error with its file:line:col,
# and saves the bundle (its plan.json) into the directory it is given when the build is ok.
_DIAGNOSE = (
    "import json, sys, regopy\n"
    "interpreter = regopy.Interpreter()\n"
    "interpreter.log_level = regopy.LogLevel.ERROR\n"
    "for name, text in json.load(sys.stdin):\n"
    "    interpreter.add_module(name, text)\n"
    "bundle = interpreter.build(sys.argv[1])\n"
    "sys.stdout.flush()\n"
    "if bundle.ok():\n"
    "    interpreter.save_bundle(sys.argv[2], bundle)\n"
)
DIAGNOSE_TIMEOUT_SECONDS = 60


def new_interpreter() -> Any:
    """An interpreter that stays quiet (errors are read, not printed) and treats a built-in's
    error as an error (by default a failed ``regex.match`` is merely undefined, so that
    ``not regex.match(...)`` would fire a deny)."""
    interpreter = regopy.Interpreter()
    interpreter.log_level = regopy.LogLevel.NONE
    interpreter.strict_built_in_errors = True
    return interpreter


def compile_policies(sources: Sequence[PolicySource], query: str) -> tuple[Any, Any]:
    """The interpreter holding the policies and the bundle of ``query``, built once.

    Raises ``ConfigurationError`` naming the file and line of every problem found."""
    _refuse_syntax_errors(sources)
    interpreter = new_interpreter()
    for source in sources:
        interpreter.add_module(source.name, source.text)
    bundle = interpreter.build(query)
    with tempfile.TemporaryDirectory(prefix="provisioner-policies-") as directory:
        log = _diagnose(sources, query, Path(directory))
        if not bundle.ok():
            raise refuse(_compile_problems(sources, bundle, log))
        unknown = list(_unknown_functions(_plan(Path(directory)), sources))
    if unknown:
        raise refuse(unknown)
    return interpreter, bundle


def _refuse_syntax_errors(sources: Sequence[PolicySource]) -> None:
    """Parse each file on its own, so that every file's syntax errors are reported at once."""
    problems: list[PolicyProblem] = []
    for source in sources:
        try:
            new_interpreter().add_module(source.name, source.text)
        except regopy.RegoError as exc:
            problems.extend(_parse_problems(source, str(exc)))
    if problems:
        raise refuse(problems)


def _parse_problems(source: PolicySource, report: str) -> list[PolicyProblem]:
    found: list[PolicyProblem] = []
    for match in _PARSE_ERROR.finditer(report):
        message = _counted(report, match.end()) or "syntax error"
        line, column = source.byte_position(int(match.group("offset")))
        found.append(PolicyProblem(source.name, message, line, column))
    return found or [PolicyProblem(source.name, f"syntax error: {report.strip()[:500]}")]


def _counted(text: str, start: int) -> str | None:
    """An s-expression atom written ``<length>:<text>``, read from ``start``."""
    match = re.match(r"(\d+):", text[start:])
    if match is None:
        return None
    begin = start + match.end()
    return text[begin : begin + int(match.group(1))]


def _compile_problems(
    sources: Sequence[PolicySource], bundle: Any, log: str
) -> list[PolicyProblem]:
    """Where the build failed: from the engine's log in the child process, else its messages."""
    problems = [
        PolicyProblem(
            match.group("file"),
            match.group("message").strip(),
            int(match.group("line")),
            int(match.group("column")),
        )
        for match in _LOGGED_ERROR.finditer(log)
    ]
    if problems:
        return problems
    messages = error_messages(rego_shared.rego_bundle_node(bundle._impl)) or ["compile error"]
    return [PolicyProblem(", ".join(s.name for s in sources), message) for message in messages]


def _diagnose(sources: Sequence[PolicySource], query: str, directory: Path) -> str:
    """The child process's log ("" if it could not run); the plan is left in ``directory``."""
    modules = json.dumps([[source.name, source.text] for source in sources])
    try:
        child = subprocess.run(
            [sys.executable, "-I", "-c", _DIAGNOSE, query, str(directory)],
            input=modules,
            capture_output=True,
            text=True,
            timeout=DIAGNOSE_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return child.stdout


def _unknown_functions(
    plan: dict[str, Any] | None, sources: Sequence[PolicySource]
) -> Iterator[PolicyProblem]:
    """Calls to functions that are neither built-ins nor rules, with where they are."""
    if plan is None:
        log.warning("policy_plan_unavailable", check="unknown functions")
        return
    static = plan.get("static", {})
    known = {item.get("name") for item in static.get("builtin_funcs", [])}
    known |= {item.get("name") for item in plan.get("funcs", {}).get("funcs", [])}
    files = [item.get("value") for item in static.get("files", [])]
    # The saved bundle names each file by its base name.
    by_name = {Path(source.name).name: source for source in sources}
    by_name.update((source.name, source) for source in sources)
    seen: set[tuple[object, ...]] = set()
    for call in _calls(plan):
        name = call.get("func")
        if not isinstance(name, str) or name in known:
            continue
        file_index, row, column = call.get("file"), call.get("row"), call.get("col")
        file = None
        if isinstance(file_index, int) and 0 <= file_index < len(files):
            file = files[file_index]
        key = (name, file, row, column)
        if key in seen:
            continue
        seen.add(key)
        source = by_name.get(file) if isinstance(file, str) else None
        yield PolicyProblem(
            source.name if source else (file or "?"),
            f"unknown function {name!r} (not a built-in of rego-cpp, nor a rule)",
            row + 1 if isinstance(row, int) else None,
            column + 1 if isinstance(column, int) else None,
        )


def _plan(directory: Path) -> dict[str, Any] | None:
    """The compiled plan (OPA IR) the child process saved; None if it did not."""
    try:
        plan = json.loads((directory / "plan.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return plan if isinstance(plan, dict) else None


def _calls(node: object) -> Iterator[dict[str, Any]]:
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, dict):
            if current.get("type") == "CallStmt" and isinstance(current.get("stmt"), dict):
                yield current["stmt"]
            stack.extend(current.values())
        elif isinstance(current, list):
            stack.extend(current)
