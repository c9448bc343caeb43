"""One JSON object per log line, the shape Cloud Logging and CloudWatch parse as structured.

Callers put their fields in ``extra={"json": {...}}``; those fields must never hold
customer values or ids (request logs carry ids of requests, counts, versions, timings).
"""

from __future__ import annotations

import logging
import sys
import time

import orjson

_SEVERITY = {"WARNING": "WARNING", "ERROR": "ERROR", "CRITICAL": "CRITICAL", "DEBUG": "DEBUG"}


class JsonFormatter(logging.Formatter):
    """Format a record as ``{"time", "severity", "logger", "message", **record.json}``."""

    _cache: tuple[int, str] = (-1, "")

    def _time(self, created: float) -> str:
        second = int(created)
        cached, stamp = self._cache  # one tuple: threads never see a torn pair
        if second != cached:  # strftime once a second, not once a line
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._cache = (second, stamp)
        return f"{stamp}.{int((created - second) * 1000):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "time": self._time(record.created),
            "severity": _SEVERITY.get(record.levelname, "INFO"),
            "logger": record.name,
            "message": record.getMessage(),
        }
        doc.update(getattr(record, "json", {}))
        return orjson.dumps(doc, default=str).decode()


def configure(level: int = logging.INFO, stream=None) -> None:
    """Send the ``segmentation`` loggers' records to ``stream`` (stdout) as JSON, once.

    Called by the function adapters, which own their process: the lines carry none of the
    caller's file, thread or process, so logging is told not to collect them (the Logging
    HOWTO's "Optimization" settings); a request log then costs a third as much.
    """
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logger = logging.getLogger("segmentation")
    if any(isinstance(h.formatter, JsonFormatter) for h in logger.handlers):
        return
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False  # the framework's root handler would print it a second time
