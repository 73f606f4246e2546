"""Loopback HTTP servers that stand in for MovieLens and TMDb in tests and benchmarks."""
