"""Running ``provisioner serve`` as a real process, to kill it and start it again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support import free_port

# Starting Python and importing the service takes ~2 s of CPU; on a loaded machine (load
# average 10 on 2 cores was seen) that was 25 s of wall time.
START_SECONDS = 120.0


class ServiceProcess:
    """``provisioner serve`` in a child process, with its log in a file."""

    def __init__(self, *, database_url: str, registry: Path, log: Path, **settings: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.env = {
            **os.environ,
            "PROVISIONER_DATABASE_URL": database_url,
            "PROVISIONER_CONFIG": str(registry),
            "PROVISIONER_PORT": str(self.port),
            "PROVISIONER_POLL_INITIAL_SECONDS": "0.02",
            "PROVISIONER_POLL_MAX_SECONDS": "0.2",
            "PROVISIONER_LOG_FORMAT": "json",
            **{f"PROVISIONER_{key.upper()}": value for key, value in settings.items()},
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = START_SECONDS) -> ServiceProcess:
        """Launch the process and wait until it is ready."""
        return self.launch().wait_ready(timeout)

    def launch(self) -> ServiceProcess:
        """Start the process without waiting (start several, then ``wait_ready`` on each)."""
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "provisioner", "serve"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    def wait_ready(self, timeout: float = START_SECONDS) -> ServiceProcess:
        """Wait until ``/readyz`` answers 200; fail if the process exits first."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the service exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=10).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()  # not left running: whoever started it may never get to stop it
        raise TimeoutError(f"the service did not become ready: {self.log.read_text()[-2000:]}")

    def wait_exit(self, timeout: float = START_SECONDS) -> int:
        """Wait for the process to end on its own; its exit code (-9: SIGKILL)."""
        assert self.process is not None
        return self.process.wait(timeout)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no lease handed back."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)

    def terminate(self, timeout: float = START_SECONDS) -> int:
        """SIGTERM, then wait for the exit code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
