"""Progress of long commands: drawn on a terminal, and nothing at all anywhere else.

A terminal is forced by injecting a rich Console with ``force_terminal=True``; under
pytest stdout and stderr are captured, so the commands see what a log file or CI sees.
"""

from __future__ import annotations

import argparse
import io

from rich.console import Console

from segmentation import Settings
from training.cli import main
from training.commands import generate
from training.progress import progress


def _terminal() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=True, width=160), out


def _generate_args(tmp_path, rows: int = 500) -> argparse.Namespace:
    return argparse.Namespace(
        rows=rows, seed=3, output=str(tmp_path / "c.csv"), format=None, dirty_fraction=0.0
    )


def test_generate_prints_only_its_result_line_when_not_on_a_terminal(tmp_path, capsys):
    assert main(["generate", "--rows", "500", "--output", str(tmp_path / "c.csv")]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [captured.out.strip()]
    assert captured.out.startswith(f"wrote 500 customers to {tmp_path / 'c.csv'} in ")
    assert captured.err == ""


def test_generate_draws_its_stage_and_elapsed_time_on_a_terminal(tmp_path, capsys):
    console, drawn = _terminal()
    assert generate.run(_generate_args(tmp_path), Settings(), console=console) == 0
    assert "generate" in drawn.getvalue()
    assert "writing 500 customers to c.csv" in drawn.getvalue()
    assert "0:00:0" in drawn.getvalue()  # elapsed, h:mm:ss
    # The result line still goes to stdout, and only it.
    assert capsys.readouterr().out.startswith("wrote 500 customers")


def test_a_console_that_is_not_a_terminal_draws_nothing(tmp_path):
    out = io.StringIO()
    assert generate.run(_generate_args(tmp_path), Settings(), console=Console(file=out)) == 0
    assert out.getvalue() == ""


def test_rows_done_and_the_stage_are_drawn():
    console, drawn = _terminal()
    with progress("score", total=10, console=console) as tracker:
        tracker.stage("scoring")
        tracker.rows(7, 10)
    assert "score" in drawn.getvalue()
    assert "scoring" in drawn.getvalue()
    assert "7 rows" in drawn.getvalue()


def test_nothing_is_drawn_and_trackers_are_inert_off_a_terminal(capsys):
    with progress("score", total=10) as tracker:
        tracker.stage("scoring")
        tracker.rows(7, 10)
    assert capsys.readouterr() == ("", "")


def test_train_draws_each_stage_as_training_reaches_it(monkeypatch, tmp_path):
    """The train command hands its progress line to training's stages (the run itself is
    replaced: what is checked is that each stage reaches the display, and only there)."""
    from training import train as training_run
    from training.commands import train

    seen: list[str] = []

    class Result:
        def summary(self) -> str:
            return "trained"

    def fake_train(settings, params, on_stage=None):
        for name in ("fit the preprocessing", "export the graph"):
            seen.append(name)
            on_stage(name)
        return Result()

    monkeypatch.setattr(training_run, "train_and_publish", fake_train)
    console, drawn = _terminal()
    args = argparse.Namespace(
        cluster_features=None,
        k=None,
        algorithm=None,
        no_select=True,
        seed=None,
        rebuild_features=False,
        no_promote=False,
    )
    assert train.run(args, Settings(warehouse=str(tmp_path / "w.duckdb")), console) == 0
    assert seen == ["fit the preprocessing", "export the graph"]
    assert "export the graph" in drawn.getvalue()
