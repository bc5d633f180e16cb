"""Tiny random models of the real architectures (Qwen3, Z-Image), built in code.

They run the real libraries' code paths on CPU in milliseconds: for tests, `zit demo` and
benchmarks. Their outputs are noise; they are stand-ins for shape and plumbing, not for quality.
"""
