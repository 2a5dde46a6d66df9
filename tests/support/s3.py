"""A real S3 API over HTTP for tests: moto's server on a free 127.0.0.1 port."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import time
from collections.abc import Callable

S3_ACCESS_KEY = "quorum-test"
S3_SECRET_KEY = "quorum-test-secret"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_listening(port: int, timeout: float, gave_up: Callable[[], bool] = lambda: False) -> bool:
    """True once 127.0.0.1:`port` accepts connections; False after `timeout` or once `gave_up()`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            if time.monotonic() > deadline or gave_up():
                return False
            time.sleep(0.02)  # polling a port with a deadline, not synchronising on a guess


def start_s3_server(timeout: float = 15.0) -> tuple[str, Callable[[], None]]:
    """Start moto's `ThreadedMotoServer`; return (endpoint_url, stop). Any access/secret key is accepted."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one access-log line per request otherwise
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    if not _wait_listening(port, timeout):
        server.stop()
        raise RuntimeError(f"moto S3 server did not listen on 127.0.0.1:{port} within {timeout}s")
    stopped = False

    def stop() -> None:
        nonlocal stopped
        if not stopped:
            stopped = True
            server.stop()

    return f"http://127.0.0.1:{port}", stop


def start_s3_process(timeout: float = 20.0) -> tuple[str, Callable[[], None]]:
    """moto's S3 server in a process of its own (benchmarks: its CPU and memory are not the measured
    process'); return (endpoint_url, stop)."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if not _wait_listening(port, timeout, gave_up=lambda: proc.poll() is not None):
        proc.kill()
        raise RuntimeError(f"moto S3 server did not listen on 127.0.0.1:{port} within {timeout}s")

    def stop() -> None:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=10)

    return f"http://127.0.0.1:{port}", stop
