"""Benchmarks: `python -m benchmarks [--quick] [--only NAME]`. Figures are ratios against a
baseline measured in the same run."""
