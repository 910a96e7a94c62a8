"""Benchmarks of the TransUNet implementation (not tests): ``python -m benchmarks.speed --help``."""
