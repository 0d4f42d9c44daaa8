"""`python -m service [uvicorn options]`: uvicorn serving service.main:app.

On SIGTERM uvicorn drains in-flight requests (up to --timeout-graceful-shutdown), runs the
lifespan shutdown, then re-raises the signal so the process dies of it (exit 143). Here that
re-raised signal is ignored instead: a drained, clean shutdown exits 0, which is what process
supervisors and `docker stop` read as success.
"""

import signal
import sys

from uvicorn.main import main as uvicorn_cli


def main() -> None:
    signal.signal(signal.SIGTERM, lambda _signum, _frame: None)
    uvicorn_cli.main(args=["service.main:app", *sys.argv[1:]], prog_name="python -m service")


if __name__ == "__main__":
    main()
