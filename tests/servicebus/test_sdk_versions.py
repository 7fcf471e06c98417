"""Every azure-servicebus release with UseDevelopmentEmulator talks to the emulator.

Each release has its own venv (`make install` builds them from clients/versions.txt); a small client
of ours (clients/roundtrip.py) runs in it against the shared emulator and reports what it saw.
Releases before 7.15 read performatives by index, so this catches frames that leave fields out.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).parent
REPO = HERE.parent.parent
VERSIONS = [v.strip() for v in (HERE / "clients" / "versions.txt").read_text().splitlines()
            if v.strip() and not v.startswith("#")]


@pytest.mark.parametrize("version", VERSIONS)
def test_release_sends_receives_renews_settles(servicebus, version):
    python = REPO / ".venv-clients" / f"servicebus-{version}" / "bin" / "python"
    assert python.exists(), f"no venv for azure-servicebus {version}: run `make install`"
    done = subprocess.run([str(python), str(HERE / "clients" / "roundtrip.py"), servicebus.connection_string,
                           "sdk-versions"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {
        "version": version,
        "received": ["one", "two", "three"],
        "first_delivery_counts": [0, 0, 0],
        "properties": {"n": 1},
        "redelivered": [["one", 1]],
        "left": [],
        "async_received": ["async-1", "async-2"],
    }
