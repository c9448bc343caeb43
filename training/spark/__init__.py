"""Apache Spark as the engine (``SEGMENTATION_ENGINE=spark``): the same dbt project built by
dbt-spark in this process's SparkSession, and batch scoring of the same ONNX bundle in
``mapInArrow``. Training stays on one machine: it reads a sample (docs/scale.md)."""
