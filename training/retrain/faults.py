"""Named points at which the scheduled run kills itself (SIGKILL), for the fault tests.

Armed by ``SEGMENTATION_FAILPOINT`` (``Settings.failpoint``); unarmed, every call is a
no-op. A SIGKILL leaves exactly what a crash, an OOM kill or a platform timeout leaves:
no ``finally`` runs, no lease is released, no record is finished.

- ``dbt``: one second into the dbt build (the build takes several seconds);
- ``fit``: when the clustering is about to be chosen and fitted;
- ``upload``: after the first file of the new version is in the store;
- ``promote``: after the version is published and verified, before the pointer moves.
"""

from __future__ import annotations

import os
import signal
import threading

POINTS = ("dbt", "fit", "upload", "promote")
_DBT_DELAY_SECONDS = 1.0


def _kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class Failpoints:
    """Call with a point's name; kills the process when that point is armed."""

    def __init__(self, armed: str | None):
        self.armed = armed
        self._timer: threading.Timer | None = None

    def __call__(self, point: str) -> None:
        if point == self.armed:
            _kill()

    def stage(self, name: str) -> None:
        """Training's stage callback: the ``fit`` point is the clustering stage."""
        if name.startswith("choose and fit"):
            self("fit")

    def during_dbt(self) -> None:
        """Start the ``dbt`` point's timer (call just before the build)."""
        if self.armed == "dbt" and self._timer is None:
            self._timer = threading.Timer(_DBT_DELAY_SECONDS, _kill)
            self._timer.daemon = True
            self._timer.start()

    def dbt_done(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
