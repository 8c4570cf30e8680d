"""`python -m bench`: the gateway's benchmark, against a naive baseline (see docs/benchmark.md)."""
