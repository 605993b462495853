"""Running the project's services as real processes: for `autopilot-sync up`, the tests and the benchmarks."""
