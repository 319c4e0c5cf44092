"""The example alert rules of docs/alerts.md are valid Prometheus rules and fire when they
should (with promtool, when it is installed: Debian's `prometheus` package has it)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import IN_CI

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def promtool_path() -> str:
    """Prometheus's promtool; skipped without it (a failure under CI)."""
    path = shutil.which("promtool")
    if path is None:
        message = "no promtool: apt-get install -y prometheus"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


def rules(directory: Path) -> Path:
    text = (ROOT / "docs" / "alerts.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.S)
    assert len(blocks) == 1
    path = directory / "rules.yaml"
    path.write_text(blocks[0], encoding="utf-8")
    return path


def run(promtool: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def test_the_rules_are_valid(tmp_path: Path, promtool_path: str) -> None:
    checked = run(promtool_path, "check", "rules", str(rules(tmp_path)), cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "7 rules found" in checked.stdout


def test_the_rules_fire_on_the_series_they_are_about(tmp_path: Path, promtool_path: str) -> None:
    rules(tmp_path)
    shutil.copy(Path(__file__).with_name("alert_rules_test.yaml"), tmp_path / "tests.yaml")
    tested = run(promtool_path, "test", "rules", "tests.yaml", cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr
