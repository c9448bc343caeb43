"""The scheduled run: rebuild features, check drift, retrain when needed, gate against the
current model, publish, promote. ``run_retrain(trigger)`` is the one entry point every
trigger calls (Cloud Functions, Lambda, HTTP, the CLI)."""

from training.retrain.run import RetrainSummary, run_retrain
from training.retrain.trigger import Trigger

__all__ = ["RetrainSummary", "Trigger", "run_retrain"]
