"""`segmentation serve`: the local emulator, predict and health as two functions-framework
processes on 127.0.0.1, serving SEGMENTATION_MODEL_STORE's current model. Ctrl-C or SIGTERM
stops both.

Each process runs gunicorn (functions-framework's production server) with ``--workers``
processes of ``--threads`` threads. The default, 2 workers x 4 threads for predict on a
2-core machine, keeps both cores busy with the GIL-bound JSON work while onnxruntime runs
single-threaded per request; health needs 1 worker x 2 threads.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from segmentation import ConfigError, Settings

HELP = "Start the local emulator: predict and health over HTTP on 127.0.0.1."
SOURCE = Path(__file__).resolve().parents[2] / "functions" / "main.py"
HOST = "127.0.0.1"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--predict-port", type=int, help="default SEGMENTATION_PREDICT_PORT")
    parser.add_argument("--health-port", type=int, help="default SEGMENTATION_HEALTH_PORT")
    parser.add_argument("--workers", type=int, default=2, help="predict worker processes")
    parser.add_argument("--threads", type=int, default=4, help="threads per predict worker")


def command(target: str, port: int) -> list[str]:
    """The functions-framework command line for one target."""
    return [
        sys.executable,
        "-m",
        "functions_framework",
        "--target",
        target,
        "--source",
        str(SOURCE),
        "--host",
        HOST,
        "--port",
        str(port),
    ]


@dataclass
class Emulator:
    """Two functions-framework processes; a context manager that always stops them."""

    settings: Settings
    predict_port: int
    health_port: int
    workers: int = 2
    threads: int = 4
    procs: list[subprocess.Popen] = field(default_factory=list)

    @property
    def predict_url(self) -> str:
        return f"http://{HOST}:{self.predict_port}"

    @property
    def health_url(self) -> str:
        return f"http://{HOST}:{self.health_port}"

    def start(self, timeout: float = 60.0) -> Emulator:
        base = {
            **os.environ,
            # The functions read their settings from the environment, like on a platform.
            "SEGMENTATION_MODEL_STORE": self.settings.model_store,
            "SEGMENTATION_POINTER_POLL_SECONDS": str(self.settings.pointer_poll_seconds),
            "PYTHONUNBUFFERED": "1",
        }
        plan = [
            ("predict", self.predict_port, self.workers, self.threads),
            ("health", self.health_port, 1, 2),
        ]
        for target, port, workers, threads in plan:
            env = {**base, "WORKERS": str(workers), "THREADS": str(threads)}
            self.procs.append(subprocess.Popen(command(target, port), env=env))
        deadline = time.monotonic() + timeout
        for port in (self.predict_port, self.health_port):
            while not _accepts(port):
                if time.monotonic() > deadline or any(p.poll() is not None for p in self.procs):
                    self.stop()
                    raise ConfigError(f"emulator: port {port} did not come up")
                time.sleep(0.05)
        return self

    def warm(self) -> int:
        """Ask each process for the model once (starts its loading); the health status."""
        _status(self.predict_url + "/model")
        return _status(self.health_url)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _accepts(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((HOST, port)) == 0


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM (kill, a supervisor) stops as cleanly as Ctrl-C


def run(args: argparse.Namespace, settings: Settings) -> int:
    signal.signal(signal.SIGTERM, _stop)
    emulator = Emulator(
        settings,
        predict_port=args.predict_port or settings.predict_port,
        health_port=args.health_port or settings.health_port,
        workers=args.workers,
        threads=args.threads,
    )
    # Ctrl-C may arrive at any point, even while the banner is printed: always a clean stop.
    try:
        with emulator:
            status = emulator.warm()
            state = "model loaded" if status == 200 else f"no verified model yet (health {status})"
            print(
                f"predict: {emulator.predict_url}  (POST /, GET /model)\n"
                f"health:  {emulator.health_url}  (GET /)\n"
                f"store:   {settings.model_store}: {state}\n"
                f"try:     curl -s {emulator.health_url}\n"
                "Ctrl-C (or SIGTERM) stops both.",
                flush=True,
            )
            while all(p.poll() is None for p in emulator.procs):
                time.sleep(0.5)
    except KeyboardInterrupt:
        return 0
    return 1  # a function process exited on its own
