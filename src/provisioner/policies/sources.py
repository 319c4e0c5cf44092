"""Policy files as text: reading a directory of ``.rego`` files, where each line starts, and the
mistakes rego-cpp accepts without a word, refused here with their file and line.

rego-cpp (the engine behind regopy) speaks Rego v1 only, and some old or unsupported forms
compile without an error but mean something else:

- ``deny[msg] { ... }`` (Rego v0) compiles as an *object* rule: ``{"message": true}``;
- ``sprintf("%q", ...)`` prints ``%q`` as is and shifts the remaining arguments;
- inline regex flags such as ``(?i)`` fail at evaluation (the engine is not RE2).
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from provisioner.errors import ConfigurationError

ROOT_PACKAGE = "provisioner"
RULES = ("deny", "warn")

# Strings (double-quoted with escapes, or raw in backticks), comments, and everything else.
_TOKENS = re.compile(r'"(?:[^"\\\n]|\\.)*"|`[^`]*`|#[^\n]*', re.DOTALL)
_PACKAGE = re.compile(r"^[ \t]*package[ \t]+([A-Za-z_][A-Za-z0-9_.]*)", re.MULTILINE)
_V0_RULE = re.compile(rf"^[ \t]*({'|'.join(RULES)})[ \t]*\[", re.MULTILINE)
_FLAGS = re.compile(r"\(\?[a-zA-Z-]+[):]")


@dataclass(frozen=True, slots=True)
class PolicyProblem:
    """Something wrong with a policy file, at a line and column (1-based) when known."""

    file: str
    message: str
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}" + (f":{self.column}" if self.column is not None else "")
        return f"{where}: {self.message}"


def refuse(problems: list[PolicyProblem]) -> ConfigurationError:
    """The error that stops the service: every problem, one per line."""
    listed = "\n".join(f"  {problem}" for problem in problems)
    return ConfigurationError(f"the policies cannot be used:\n{listed}")


@dataclass(frozen=True)
class PolicySource:
    """One ``.rego`` file: its name (the path shown in errors) and its text."""

    name: str
    text: str

    @cached_property
    def _line_starts(self) -> list[int]:
        return [0, *(match.end() for match in re.finditer("\n", self.text))]

    def position(self, offset: int) -> tuple[int, int]:
        """The line and column (1-based) of a character offset."""
        line = bisect_right(self._line_starts, offset)
        return line, offset - self._line_starts[line - 1] + 1

    def byte_position(self, offset: int) -> tuple[int, int]:
        """The line and column of a byte offset into the UTF-8 text (as rego-cpp counts)."""
        prefix = self.text.encode("utf-8")[:offset].decode("utf-8", errors="ignore")
        return self.position(len(prefix))

    @cached_property
    def packages(self) -> tuple[str, ...]:
        """The packages the file declares (in code, not in comments or strings)."""
        return tuple(match.group(1) for match in _PACKAGE.finditer(self._code))

    @cached_property
    def _code(self) -> str:
        """The text with strings and comments blanked out, offsets kept."""
        return _TOKENS.sub(lambda match: _blank(match.group(0)), self.text)

    def _strings(self) -> Iterator[re.Match[str]]:
        return (m for m in _TOKENS.finditer(self.text) if not m.group(0).startswith("#"))

    def problems(self) -> list[PolicyProblem]:
        """The forms rego-cpp accepts but gets wrong (see the module's docstring)."""
        found: list[PolicyProblem] = []
        for match in _V0_RULE.finditer(self._code):
            rule = match.group(1)
            found.append(
                self._at(
                    match.start(1),
                    f"'{rule}[...]' is Rego v0 and would be read as an object rule: "
                    f"write '{rule} contains msg if {{ ... }}' (Rego v1)",
                )
            )
        for match in self._strings():
            text = match.group(0)
            if "%q" in text:
                found.append(
                    self._at(
                        match.start() + text.index("%q"),
                        "sprintf's %q is not supported by rego-cpp (it is printed as is): "
                        "use %s or %v",
                    )
                )
            if flags := _FLAGS.search(text):
                found.append(
                    self._at(
                        match.start() + flags.start(),
                        f"inline regex flags such as {flags.group(0)[:-1]}) are not supported "
                        "by rego-cpp: the match fails when evaluated",
                    )
                )
        return found

    def _at(self, offset: int, message: str) -> PolicyProblem:
        line, column = self.position(offset)
        return PolicyProblem(self.name, message, line, column)


def _blank(token: str) -> str:
    return "".join(ch if ch == "\n" else " " for ch in token)


def read_sources(directory: Path) -> list[PolicySource]:
    """Every ``.rego`` file under ``directory`` (sorted, so evaluation order is stable).

    Refuses a missing directory, an unreadable file, a set without any package under
    ``provisioner``, and the forms rego-cpp gets wrong."""
    if not directory.is_dir():
        raise ConfigurationError(f"the policy directory {directory} does not exist")
    sources: list[PolicySource] = []
    problems: list[PolicyProblem] = []
    for path in sorted(directory.rglob("*.rego")):
        try:
            sources.append(PolicySource(str(path), path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(PolicyProblem(str(path), f"cannot be read: {exc}"))
    for source in sources:
        problems.extend(source.problems())
    if problems:
        raise refuse(problems)
    if not any(policy_packages(source) for source in sources):
        raise ConfigurationError(
            f"no policy in {directory}: no .rego file declares a package under "
            f"'{ROOT_PACKAGE}' (such as 'package {ROOT_PACKAGE}.descriptor')"
        )
    return sources


def policy_packages(source: PolicySource) -> list[str]:
    """The file's packages that are policies: ``provisioner`` and those under it."""
    return [
        name
        for name in source.packages
        if name == ROOT_PACKAGE or name.startswith(ROOT_PACKAGE + ".")
    ]
