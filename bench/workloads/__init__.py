"""One module per workload: `TITLE`, `metrics(ctx)` and `measure(ctx, system, round) -> {metric name: value}`."""
