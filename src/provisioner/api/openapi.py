"""Export the service's OpenAPI document to ``openapi/openapi.json``, or check it is current.

python -m provisioner.api.openapi            # write the file
python -m provisioner.api.openapi --check    # exit 1 if the file differs from the app's
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from provisioner.api.app import create_app
from provisioner.settings import Settings

DEFAULT_PATH = Path("openapi/openapi.json")


def document() -> dict[str, Any]:
    """The OpenAPI document of the app (building it starts nothing)."""
    schema: dict[str, Any] = create_app(Settings()).openapi()
    return schema


def render() -> str:
    return json.dumps(document(), indent=2, sort_keys=False, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    parser.add_argument("--path", type=Path, default=DEFAULT_PATH)
    args = parser.parse_args(argv)
    current = render()
    if args.check:
        saved = args.path.read_text(encoding="utf-8") if args.path.exists() else ""
        if saved != current:
            print(
                f"{args.path} is out of date: run `python -m provisioner.api.openapi`",
                file=sys.stderr,
            )
            return 1
        print(f"{args.path} matches the app")
        return 0
    args.path.parent.mkdir(parents=True, exist_ok=True)
    args.path.write_text(current, encoding="utf-8")
    print(f"wrote {args.path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
