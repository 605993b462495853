"""The chaos scenarios: each starts a real stack, drives load and faults from one seed, records a history, checks it.

One file per scenario, each an `async def <name>(run: Run) -> None` that plays it in the world `run.py` gives it
(stack, seeded rng, recorder, producer); `Run.finish` judges every scenario the same way. `registry.py` lists them.

Adding a scenario: write `<name>.py` with its play function, then add one `Scenario(...)` line to `REGISTRY` in
`registry.py`; the CLI (`autopilot-sync chaos --scenario <name>`), the soak run and `run_scenario` find it there.
"""
