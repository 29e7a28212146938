"""Benchmarks: one command each, ratios against raw baselines measured in the same run."""
