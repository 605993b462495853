"""Keep `bench.engine_steps` honest: every step it names exists, its wrappers count each run and are removed after,
and a run reports the steps a one-event call goes through. Nothing here reads a time."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench import engine_steps


def _attribute(module_name: str, path: str) -> object:
    owner: object = importlib.import_module(module_name)
    for part in path.split("."):
        owner = getattr(owner, part)
    return owner


def test_every_named_step_exists_and_is_put_back_after_the_run() -> None:
    before = {step: _attribute(*step) for step in engine_steps.STEPS}
    times = engine_steps.StepTimes()
    restore = engine_steps.install(times)
    assert all(_attribute(*step) is not before[step] for step in engine_steps.STEPS)
    for owner, attribute, original in reversed(restore):
        setattr(owner, attribute, original)
    assert {step: _attribute(*step) for step in engine_steps.STEPS} == before


def test_a_wrapped_step_keeps_its_answer_and_counts_each_run() -> None:
    times = engine_steps.StepTimes()
    double = times.wrap("double", lambda value: value * 2)
    assert [double(n) for n in range(3)] == [0, 2, 4]
    assert len(times.runs["double"]) == 3
    assert times.per_call("double", 3)[1] == 1.0


def test_a_run_reports_the_steps_of_a_one_event_call(capsys: pytest.CaptureFixture[str]) -> None:
    assert engine_steps.main(["--calls", "20"]) == 0
    report = capsys.readouterr().out
    for step in ("HostEngine.start_call", "HostEngine._commit", "_append_one", "encode_record", "CommitLog.append"):
        assert f"  {step} " in report
