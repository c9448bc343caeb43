"""The operations loop end to end, through the local emulator over real HTTP: v1 served;
drifted customers arrive; `segmentation retrain` finds the drift, gates and promotes v2;
the running emulator serves v2 without a restart; `segmentation models rollback` serves v1
again; a bounded load loop during all of it sees only 200s."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pyarrow.csv as pcsv
import pytest
from fixtures.workspace import workspace_settings

from segmentation.store import open_store
from training.commands.serve import Emulator
from training.data import generate_customers, shift_customers, write_customers
from training.model.params import TrainingParams
from training.train import train_and_publish

pytestmark = pytest.mark.slow
CUSTOMER = {
    "balance": 40.9, "balance_frequency": 0.82, "purchases": 95.4, "oneoff_purchases": 0.0,
    "installments_purchases": 95.4, "cash_advance": 0.0, "purchases_frequency": 0.17,
    "oneoff_purchases_frequency": 0.0, "purchases_installments_frequency": 0.08,
    "cash_advance_frequency": 0.0, "cash_advance_trx": 0, "purchases_trx": 2,
    "credit_limit": 1000.0, "payments": 201.8, "minimum_payments": 139.5,
    "prc_full_payment": 0.0, "tenure": 12,
}  # fmt: skip


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, {}


def _served_version(emulator: Emulator) -> str | None:
    return _get(emulator.predict_url + "/model")[1].get("model_version")


def _wait_for(emulator: Emulator, version: str, seconds: float = 30.0) -> float:
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        if _served_version(emulator) == version:
            return time.monotonic() - start
        time.sleep(0.2)
    raise AssertionError(f"the emulator did not serve {version} within {seconds} s")


class LoadLoop(threading.Thread):
    """POSTs one customer until stopped, at most ``limit`` times; records the statuses."""

    def __init__(self, url: str, limit: int = 20_000):
        super().__init__(daemon=True)
        self.url, self.limit = url, limit
        self.statuses: list[int] = []
        self.versions: set[str] = set()
        self.stopped = threading.Event()

    def run(self) -> None:
        body = json.dumps(CUSTOMER).encode()
        while not self.stopped.is_set() and len(self.statuses) < self.limit:
            request = urllib.request.Request(
                self.url, data=body, headers={"Content-Type": "application/json"}
            )
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    self.statuses.append(response.status)
                    self.versions.add(json.loads(response.read())["model_version"])
            except urllib.error.HTTPError as exc:
                self.statuses.append(exc.code)
            except OSError:
                self.statuses.append(0)
            time.sleep(0.01)


def _cli(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "training.cli", *args],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def test_drift_retrain_promote_and_rollback_are_served_without_a_restart(tmp_path):
    write_customers(tmp_path / "v1.csv", 3_000, seed=1)
    settings = workspace_settings(tmp_path, tmp_path / "v1.csv", pointer_poll_seconds=1.0)
    v1 = train_and_publish(settings, TrainingParams(seed=3, select=False, k=4)).version
    drifted = shift_customers(generate_customers(3_000, seed=77), ("cash_advance", "no_purchases"))
    pcsv.write_csv(drifted, tmp_path / "drifted.csv")
    env = {
        "SEGMENTATION_DATA": str(tmp_path / "drifted.csv"),
        "SEGMENTATION_MODEL_STORE": settings.model_store,
        "SEGMENTATION_SELECT": "false",
        "SEGMENTATION_K": "4",
        "SEGMENTATION_DRIFT_PERSISTENCE": "1",  # act on the first act-level check
    }
    emulator = Emulator(settings, _free_port(), _free_port(), workers=2, threads=2).start()
    load = LoadLoop(emulator.predict_url + "/")
    try:
        assert emulator.warm() == 200 and _served_version(emulator) == v1
        load.start()
        retrain = _cli("retrain", "--json", env=env)
        assert retrain.returncode == 0, retrain.stderr[-2000:]
        summary = json.loads(retrain.stdout)
        assert summary["outcome"] == "promoted" and "act-level drift" in summary["reasons"]
        assert "log_purchases" in summary["drift"]["drifting"]
        v2 = summary["version"]
        _wait_for(emulator, v2)
        rollback = _cli("models", "rollback", env=env)
        assert rollback.returncode == 0, rollback.stderr[-2000:]
        _wait_for(emulator, v1)
        assert open_store(settings.model_store).read_pointer()[0].version == v1
        time.sleep(1.0)  # a little load on v1 again
    finally:
        load.stopped.set()
        load.join(timeout=30)
        emulator.stop()
    assert len(load.statuses) > 50
    assert set(load.statuses) == {200}, {s: load.statuses.count(s) for s in set(load.statuses)}
    assert load.versions == {v1, v2}
