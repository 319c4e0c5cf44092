"""Files shipped beside the code: database migrations and the examples.

In a wheel they are inside the package (``provisioner/_migrations``, ``provisioner/_examples``);
in a source checkout (editable install) they are the repository's top-level folders.
"""

from __future__ import annotations

from pathlib import Path

from provisioner.errors import ConfigurationError


def bundled(name: str, marker: str) -> Path:
    """The folder ``name`` that contains ``marker``, wherever this installation keeps it."""
    here = Path(__file__).resolve().parent
    for candidate in (here / f"_{name}", here.parents[1] / name):
        if (candidate / marker).is_file():
            return candidate
    raise ConfigurationError(f"the {name} folder is missing from this installation")
