"""Numbers about trained runs: evaluation, metrics, comparison of runs."""
