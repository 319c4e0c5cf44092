"""The policy engine (``provisioner.policies``) with real Rego, evaluated by regopy: what the
example policies allow and deny, how policies that cannot be used are reported (file, line,
column), and what an evaluation returns."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from provisioner.errors import ConfigurationError, PolicyError, Problem
from provisioner.policies import PolicyEngine

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def policy_input(descriptor: Any = None, **fields: Any) -> str:
    return json.dumps(
        {
            "action": "DEPLOY",
            "environment": "development",
            "descriptor": descriptor,
            "components": None,
            "removeData": False,
            "principal": None,
            **fields,
        }
    )


def load(directory: Path) -> PolicyEngine:
    return asyncio.run(PolicyEngine.load(directory))


def write(directory: Path, **files: str) -> Path:
    for name, text in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return directory


def refusal(directory: Path) -> str:
    with pytest.raises(ConfigurationError) as refused:
        load(directory)
    return refused.value.message


@pytest.fixture(scope="module")
def examples() -> Iterator[PolicyEngine]:
    engine = load(EXAMPLES / "policies")
    yield engine
    engine.close()


def example_product() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((EXAMPLES / "data-product.yaml").read_text())
    return document


# --- the example policies ----------------------------------------------------------------------


async def test_the_example_data_product_passes_the_example_policies(
    examples: PolicyEngine,
) -> None:
    """What ``provisioner demo`` deploys is allowed, without a warning."""
    verdict = await examples.evaluate(policy_input(example_product()))
    assert verdict.denials == ()
    assert verdict.warnings == ()


async def test_the_example_policies_enforce_the_data_product_specification(
    examples: PolicyEngine,
) -> None:
    """Identifier formats, required fields, component kinds and data contracts."""
    document = example_product()
    document["id"] = "urn:dmb:dp:Sales:sales-analytics:0"
    del document["dataProductOwner"]
    document["version"] = "1.2"
    document["components"][0]["kind"] = "outputPort"
    document["components"][1]["id"] = "curated-storage"
    del document["components"][4]["dataContract"]
    verdict = await examples.evaluate(policy_input(document))
    messages = [problem.message for problem in verdict.denials]
    assert {problem.path for problem in verdict.denials} == {"provisioner.dataproduct"}
    assert (
        "id urn:dmb:dp:Sales:sales-analytics:0 is not urn:dmb:dp:<domain>:<name>:<major version>"
        in messages
    )
    assert "dataProductOwner is required (a non-empty string)" in messages
    assert "version 1.2 is not major.minor.patch" in messages
    assert any("has kind outputPort: one of" in message for message in messages)
    port = document["components"][4]["id"]
    assert f"output port {port} declares no data contract (dataContract.schema)" in messages


async def test_component_ids_and_the_major_version_follow_the_unit_id(
    examples: PolicyEngine,
) -> None:
    document = example_product()
    document["version"] = "1.0.0"  # the id says major version 0
    document["domain"] = "finance"  # the id says sales
    document["components"][1]["id"] = "urn:dmb:cmp:sales:other:0:curated-storage"
    verdict = await examples.evaluate(policy_input(document))
    messages = [problem.message for problem in verdict.denials]
    assert "the id's major version 0 is not the major version of 1.0.0" in messages
    assert "the id's domain sales is not the domain finance" in messages
    assert (
        "component id urn:dmb:cmp:sales:other:0:curated-storage does not start with "
        "urn:dmb:cmp:sales:sales-analytics:0:" in messages
    )


async def test_a_missing_description_is_a_warning(examples: PolicyEngine) -> None:
    document = example_product()
    del document["description"]
    verdict = await examples.evaluate(policy_input(document))
    assert verdict.denials == ()
    assert verdict.warnings == (
        Problem("provisioner.dataproduct", "the data product has no description"),
    )


@pytest.mark.parametrize(
    ("action", "environment", "remove_data", "denied"),
    [
        ("UNDEPLOY", "production", True, True),
        ("UNDEPLOY", "production", False, False),
        ("UNDEPLOY", "qa", True, False),
        ("DEPLOY", "production", False, False),
    ],
)
async def test_production_keeps_its_data(
    examples: PolicyEngine, action: str, environment: str, remove_data: bool, denied: bool
) -> None:
    """Only an undeploy in production that asks to remove the data is denied."""
    verdict = await examples.evaluate(
        policy_input(
            example_product(), action=action, environment=environment, removeData=remove_data
        )
    )
    production = [p for p in verdict.denials if p.path == "provisioner.production"]
    assert bool(production) is denied


# --- policies that cannot be used stop the service, saying where -------------------------------


def test_a_syntax_error_is_reported_with_its_file_and_line(tmp_path: Path) -> None:
    """Byte offsets become lines and columns, non-ASCII text before them included."""
    write(
        tmp_path,
        **{
            "ok.rego": 'package provisioner.ok\nimport rego.v1\ndeny contains "x" if false\n',
            "bad.rego": "package provisioner.bad\nimport rego.v1\n# é é\n"
            'deny contains msg if {\n  msg := "a"\n',
        },
    )
    assert f"{tmp_path / 'bad.rego'}:4:22: this is unclosed" in refusal(tmp_path)


def test_a_compile_error_is_reported_with_its_file_and_line(tmp_path: Path) -> None:
    write(
        tmp_path,
        **{
            "broken.rego": "package provisioner.broken\nimport rego.v1\n\n"
            'deny contains msg if {\n    input.x ==\n    msg := "a"\n}\n'
        },
    )
    assert f"{tmp_path / 'broken.rego'}:5:5: Unable to unify due to cycle" in refusal(tmp_path)


def test_an_unknown_function_is_refused_at_start(tmp_path: Path) -> None:
    """rego-cpp compiles it and fails only when a rule calls it; it is found in the plan."""
    write(
        tmp_path,
        **{
            "lib/util.rego": "package lib.util\nimport rego.v1\nhas(o, k) if o[k]\n",
            "unknown.rego": "package provisioner.unknown\nimport rego.v1\n"
            "import data.lib.util\n"
            'deny contains msg if {\n  input.x == 2\n  util.has(input, "x")\n'
            "  msg := no_such_fn(input.x)\n}\n",
        },
    )
    message = refusal(tmp_path)
    assert f"{tmp_path / 'unknown.rego'}:7:10: unknown function 'no_such_fn'" in message
    assert "util" not in message.replace("lib/util.rego", "")


def test_what_rego_cpp_gets_wrong_is_refused_with_its_line(tmp_path: Path) -> None:
    """Rego v0 rules, sprintf's %q and inline regex flags compile, and mean something else."""
    write(
        tmp_path,
        **{
            "old.rego": "package provisioner.old\n"
            "# deny[msg] in a comment is fine\n"
            'deny[msg] { input.x == 1; msg := sprintf("%q", [input.x]) }\n'
            'warn contains "w" if regex.match(`(?i)abc`, input.s)\n'
        },
    )
    message = refusal(tmp_path)
    path = tmp_path / "old.rego"
    assert f"{path}:3:1: 'deny[...]' is Rego v0" in message
    assert f"{path}:3:43: sprintf's %q is not supported" in message
    assert f"{path}:4:35: inline regex flags such as (?i) are not supported" in message
    assert ":2:" not in message


def test_a_deny_that_is_not_a_set_is_refused(tmp_path: Path) -> None:
    write(tmp_path, **{"o.rego": 'package provisioner.o\nimport rego.v1\ndeny := {"a": 1}\n'})
    assert "provisioner.o.deny is not a set of messages" in refusal(tmp_path)


def test_a_policy_failing_on_the_sample_inputs_is_refused(tmp_path: Path) -> None:
    write(
        tmp_path,
        **{
            "c.rego": "package provisioner.c\nimport rego.v1\n"
            "v := 1 if input.removeData\nv := 2 if input.removeData\n"
            'deny contains "x" if v == 1\n'
        },
    )
    assert "complete rules must not produce multiple outputs" in refusal(tmp_path)


def test_a_directory_without_policies_is_refused(tmp_path: Path) -> None:
    assert "does not exist" in refusal(tmp_path / "missing")
    write(tmp_path, **{"lib.rego": "package lib\nimport rego.v1\nf(x) := x\n"})
    assert "no .rego file declares a package under 'provisioner'" in refusal(tmp_path)


# --- evaluation ------------------------------------------------------------------------------


async def test_every_package_under_provisioner_is_a_policy(tmp_path: Path) -> None:
    """Nested packages and the root one; messages as strings, conftest's {msg}, or JSON;
    a package elsewhere is a library, not a policy."""
    write(
        tmp_path,
        **{
            "root.rego": 'package provisioner\nimport rego.v1\nwarn contains "root" if true\n',
            "team/a.rego": "package provisioner.team.a\nimport rego.v1\n"
            'deny contains {"msg": "from an object"} if true\n'
            "deny contains 42 if true\n",
            "lib.rego": 'package other\nimport rego.v1\ndeny contains "not a policy" if true\n',
        },
    )
    engine = await PolicyEngine.load(tmp_path)
    try:
        assert engine.packages == ["provisioner", "provisioner.team.a"]
        verdict = await engine.evaluate(policy_input())
    finally:
        engine.close()
    assert verdict.warnings == (Problem("provisioner", "root"),)
    assert set(verdict.denials) == {
        Problem("provisioner.team.a", "from an object"),
        Problem("provisioner.team.a", "42"),
    }


async def test_the_input_reaches_the_policies_intact(tmp_path: Path) -> None:
    """Handed over as JSON text: quotes, non-ASCII text and integers beyond 64 bits survive
    (regopy's own conversion of Python values breaks the first and overflows the last)."""
    write(
        tmp_path,
        **{
            "echo.rego": "package provisioner.echo\nimport rego.v1\n"
            'warn contains sprintf("%v", [input.descriptor.n]) if true\n'
            "warn contains input.descriptor.s if true\n"
        },
    )
    engine = await PolicyEngine.load(tmp_path)
    try:
        verdict = await engine.evaluate(policy_input({"n": 10**30, "s": 'a "quoted" é\u2028'}))
    finally:
        engine.close()
    assert {problem.message for problem in verdict.warnings} == {
        str(10**30),
        'a "quoted" é\u2028',
    }


async def test_an_answer_rego_cpp_writes_as_broken_json_is_still_read(tmp_path: Path) -> None:
    """rego-cpp leaves quotes unescaped in a sprintf of a concat: the answer is then read from
    its nodes, and every message still comes through."""
    write(
        tmp_path,
        **{
            "t.rego": "package provisioner.t\nimport rego.v1\n"
            'joined := concat(":", ["a", "b"])\n'
            'deny contains sprintf("joined %s", [joined]) if true\n'
            'deny contains "plain" if true\n'
            'warn contains sprintf("said %s", [input.principal]) if true\n'
        },
    )
    engine = await PolicyEngine.load(tmp_path)
    try:
        verdict = await engine.evaluate(policy_input(principal='say "hi" \\o/'))
    finally:
        engine.close()
    assert {problem.message for problem in verdict.denials} == {'joined "a:b"', "plain"}
    assert verdict.warnings == (Problem("provisioner.t", 'said say "hi" \\o/'),)


async def test_a_policy_failing_on_a_request_is_a_policy_error(tmp_path: Path) -> None:
    """An error that the sample inputs do not reach fails that evaluation, loudly."""
    write(
        tmp_path,
        **{
            "c.rego": "package provisioner.c\nimport rego.v1\n"
            'v := 1 if input.principal == "mallory"\nv := 2 if input.principal == "mallory"\n'
            'deny contains "x" if v == 1\n'
        },
    )
    engine = await PolicyEngine.load(tmp_path)
    try:
        with pytest.raises(PolicyError, match="multiple outputs"):
            await engine.evaluate(policy_input(principal="mallory"))
        assert (await engine.evaluate(policy_input(principal="alice"))).denials == ()
    finally:
        engine.close()


async def test_concurrent_evaluations_each_get_their_own_verdict(
    examples: PolicyEngine,
) -> None:
    """One interpreter, one thread: evaluations queue rather than mix their inputs."""

    async def one(index: int) -> tuple[int, bool]:
        environment = "production" if index % 2 else "qa"
        verdict = await examples.evaluate(
            policy_input(
                example_product(), action="UNDEPLOY", environment=environment, removeData=True
            )
        )
        return index, bool(verdict.denials)

    results = await asyncio.gather(*(one(index) for index in range(40)))
    assert all(denied == bool(index % 2) for index, denied in results)
