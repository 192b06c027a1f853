"""Benchmarks for jobchain's engine (run ``python -m bench.core``)."""
