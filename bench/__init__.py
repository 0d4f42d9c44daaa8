"""The benchmark: the service against a FastAPI + raw-driver baseline (see docs/benchmark.md)."""
