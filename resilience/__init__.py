"""Soak and chaos runs: the gateway over time and under faults, every history checked."""
