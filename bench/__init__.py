"""Benchmarks: `incidents bench` runs every row of issue 15's table, each figure next to a raw
baseline measured in the same run (bench.suite)."""
