"""Logging, set up once, from Settings: every line of the process in LOG_FORMAT.

One event per line, JSON (LOG_FORMAT=json) or readable text: ours, uvicorn's (its worker
supervisor's included) and SQLAlchemy's echo alike, each with the request id of the request it
was written for. `dict_config(settings)` is the whole set-up, as a `logging.config.dictConfig`:
`service.main` applies it when imported (so `uvicorn service.main:app` gets it), and
`python -m service` gives it to uvicorn too (`--log-config`), which applies it in the
supervisor before any app exists.

The access log, one line per request, is written apart, by `access_logger(settings)`: through
structlog's own logger, without the standard library's records, handlers and formatter, which
weigh on a line every request writes (docs/benchmark.md). It comes out the same.
"""

import logging.config
import sys
from typing import Any

import orjson
import structlog

from service.config import Settings


def dict_config(settings: Settings) -> dict[str, Any]:
    level = settings.LOG_LEVEL.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"lines": {"()": f"{__name__}.formatter", "format": settings.LOG_FORMAT}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "lines"}},
        # Libraries say only what goes wrong; ours and uvicorn's say what LOG_LEVEL asks.
        "root": {"handlers": ["stderr"], "level": "WARNING"},
        "loggers": {
            "service": {"level": level},
            "uvicorn": {"level": level, "handlers": [], "propagate": True},
            "uvicorn.error": {"handlers": [], "propagate": True},
            # Off: our access line names the route template and the request id.
            "uvicorn.access": {"handlers": [], "propagate": False},
            # The SQL echo (DB_ECHO), without parameters (hide_parameters in service/db.py).
            "sqlalchemy.engine": {"level": "INFO" if settings.DB_ECHO else "WARNING"},
        },
    }


def configure(settings: Settings) -> None:
    logging.config.dictConfig(dict_config(settings))


def formatter(format: str) -> logging.Formatter:
    """One event per line: JSON objects for "json", readable text otherwise."""
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,  # the request id
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        _without_color_message,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    rendering: list[Any] = (
        [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
        if format == "json"
        else [
            structlog.dev.ConsoleRenderer(
                colors=False, exception_formatter=structlog.dev.plain_traceback
            )
        ]
    )
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *rendering],
    )


def _without_color_message(
    _logger: Any, _method: str, event: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    event.pop("color_message", None)  # uvicorn's copy of the message, with terminal colours
    return event


def access_logger(settings: Settings) -> Any:
    """The access log's logger: the fields and format of every other line."""
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer(_orjson_text)
        if settings.LOG_FORMAT == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    logger = structlog.wrap_logger(
        _Stderr(),
        processors=[
            structlog.contextvars.merge_contextvars,  # the request id
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(settings.LOG_LEVEL.upper()),
        cache_logger_on_first_use=True,
    )
    return logger.bind(logger="service.access")


def _orjson_text(event: Any, **_options: Any) -> str:
    return orjson.dumps(event).decode()


class _Stderr:
    """A structlog logger: each line to the sys.stderr of the moment, as logging's are."""

    def msg(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    info = msg
