"""Offline side of the platform: sample data, the dbt feature build, training, the SQL to
ONNX compiler, export, model selection, drift and the scheduled retrain. Imports the core
(``segmentation``); nothing on the serving path imports this package."""
