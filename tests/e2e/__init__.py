"""Across the layers: faults, fuzzing, hostile input, and the benchmarks' smoke runs."""
