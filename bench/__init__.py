"""The benchmark: the service against a FastAPI + raw-driver baseline (see bench/README.md)."""
