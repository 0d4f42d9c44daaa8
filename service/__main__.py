"""`python -m service [uvicorn options]`: uvicorn serving service.main:app.

- Settings are checked first: a bad one is one line, before uvicorn starts.
- Workers: --workers, else WEB_CONCURRENCY (from the environment or .env). With more than one,
  Prometheus metrics are kept in files shared by the workers (prometheus_client's multiprocess
  mode): PROMETHEUS_MULTIPROC_DIR, or a new temporary directory, emptied at start.
- Logging: uvicorn gets service/logs.py's set-up (--log-config), so that its own lines, the
  worker supervisor's included, come out as the app's do.
- On SIGTERM uvicorn drains in-flight requests (up to --timeout-graceful-shutdown), runs the
  lifespan shutdown, then re-raises the signal so the process dies of it (exit 143). Here that
  re-raised signal is ignored instead: a drained, clean shutdown exits 0, which is what process
  supervisors and `docker stop` read as success.
"""

import json
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

from uvicorn.main import main as uvicorn_cli

from service import logs
from service.config import ConfigError, Settings, load_settings


def _workers(args: list[str]) -> str | None:
    """The value of --workers, if given."""
    for i, arg in enumerate(args):
        if arg == "--workers" and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--workers="):
            return arg.partition("=")[2]
    return None


def _shared_metrics_directory(settings: Settings) -> None:
    """PROMETHEUS_MULTIPROC_DIR, or a new directory, emptied: files left by an earlier run would
    add their counts to this one's."""
    directory = settings.PROMETHEUS_MULTIPROC_DIR or Path(
        tempfile.mkdtemp(prefix="service-metrics-")
    )
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    # Set for the workers, which inherit it: prometheus_client reads it when imported, and
    # their settings from it.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)


def main() -> None:
    args = sys.argv[1:]
    try:
        settings = load_settings()
    except ConfigError as exc:
        raise SystemExit(f"error: {exc}") from None
    workers = _workers(args)
    if workers is None:
        workers = str(settings.WEB_CONCURRENCY)
        args = ["--workers", workers, *args]
    if workers != "1":  # uvicorn itself refuses a --workers that is not a number
        _shared_metrics_directory(settings)
    signal.signal(signal.SIGTERM, lambda _signum, _frame: None)
    with tempfile.TemporaryDirectory(prefix="service-") as directory:
        if not any(arg.startswith("--log-config") for arg in args):
            # uvicorn applies a logging set-up of its own unless given one, as a file.
            log_config = Path(directory) / "logging.json"
            log_config.write_text(json.dumps(logs.dict_config(settings)))
            args = ["--log-config", str(log_config), *args]
        uvicorn_cli.main(args=["service.main:app", *args], prog_name="python -m service")


if __name__ == "__main__":
    main()
