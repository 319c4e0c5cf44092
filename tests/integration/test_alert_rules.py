"""The example alert rules of docs/alerts.md are valid Prometheus rules and fire when they
should (with promtool, when it is installed: Debian's `prometheus` package has it)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROMTOOL = shutil.which("promtool")

pytestmark = pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed")


def rules(directory: Path) -> Path:
    text = (ROOT / "docs" / "alerts.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.S)
    assert len(blocks) == 1
    path = directory / "rules.yaml"
    path.write_text(blocks[0], encoding="utf-8")
    return path


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def test_the_rules_are_valid(tmp_path: Path) -> None:
    checked = promtool("check", "rules", str(rules(tmp_path)), cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "7 rules found" in checked.stdout


def test_the_rules_fire_on_the_series_they_are_about(tmp_path: Path) -> None:
    rules(tmp_path)
    shutil.copy(Path(__file__).with_name("alert_rules_test.yaml"), tmp_path / "tests.yaml")
    tested = promtool("test", "rules", "tests.yaml", cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr
