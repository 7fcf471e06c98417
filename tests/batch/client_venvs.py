"""Virtual environments for older Batch clients, one per pinned requirements file in tests/batch/clients/.

Each lives under .venv-clients/{name} (gitignored) and is rebuilt only when its requirements file changes, so
the cost is paid once per machine: `make install` builds them (`python -m tests.batch.client_venvs`), and a
test that needs one builds it itself if it is missing.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = Path(__file__).with_name("clients")
HOME = ROOT / ".venv-clients"


def ensure(name: str) -> Path:
    """The python of the client environment `name`, built from clients/{name}.txt if out of date."""
    requirements = REQUIREMENTS / f"{name}.txt"
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()
    folder = HOME / name
    python = folder / "bin" / "python"
    stamp = folder / ".installed-stamp"
    if python.exists() and stamp.exists() and stamp.read_text() == digest:
        return python
    venv.create(folder, with_pip=True, clear=True)
    pip = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                          "-r", str(requirements)], capture_output=True, text=True)
    if pip.returncode != 0:
        raise RuntimeError(f"pip could not build {folder}:\n{pip.stdout}{pip.stderr}")
    stamp.write_text(digest)
    return python


def names() -> list[str]:
    return sorted(p.stem for p in REQUIREMENTS.glob("*.txt"))


if __name__ == "__main__":
    for client in sys.argv[1:] or names():
        print(f"client environment {client}: {ensure(client)}")
