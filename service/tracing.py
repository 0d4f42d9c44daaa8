"""Traces (the `otel` extra): OpenTelemetry's FastAPI and SQLAlchemy instrumentations,
exported over OTLP."""

from typing import TYPE_CHECKING

from fastapi import FastAPI

from service.db import Database

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider


def otlp_tracer_provider() -> "TracerProvider":
    """Spans exported over OTLP/HTTP to OTEL_EXPORTER_OTLP_ENDPOINT (the SDK reads it)."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": "service"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider


def trace_requests(app: FastAPI, provider: "TracerProvider") -> None:
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(
        app, tracer_provider=provider, excluded_urls="/health,/health/live,/metrics"
    )


def trace_statements(database: Database, provider: "TracerProvider") -> None:
    # The async engines' sync_engine is where SQLAlchemy's events fire. Spans carry the
    # statement's text, never its parameters. skip_dep_check: the package declares
    # "sqlalchemy < 2.1" (open-telemetry/opentelemetry-python-contrib#2971), older than 2.1
    # itself; tests/test_observability.py shows the spans on 2.1.
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    SQLAlchemyInstrumentor().instrument(
        engines=[database.engine.sync_engine, database.read_engine.sync_engine],
        tracer_provider=provider,
        skip_dep_check=True,
    )


def untrace_statements() -> None:
    """Undo trace_statements, so that a next engine in this process can be traced."""
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    SQLAlchemyInstrumentor().uninstrument()
