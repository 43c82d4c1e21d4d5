"""Benchmarks (see each module's docstring for how to run it)."""
