# The API image: dependencies and the package are installed into a virtualenv in a build stage;
# the runtime stage gets only that virtualenv plus what `alembic upgrade head` reads.
# EXTRA: an optional dependency group of pyproject.toml to add; `otel` (OpenTelemetry traces,
# about 10 MB) by default, `--build-arg EXTRA=` for none.
FROM python:3.12-slim AS build
ARG EXTRA=otel

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never
# uv from PyPI, pinned: the tool that reads uv.lock. binutils for `strip`, in this stage only:
# the version is the base image's Debian's.
# hadolint ignore=DL3008
RUN pip install --no-cache-dir uv==0.13.9 \
    && apt-get update -q \
    && apt-get install -y -q --no-install-recommends binutils \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src

# Dependency layer: keyed on pyproject.toml and uv.lock alone, so editing service/ does not
# reinstall it. --locked: exactly the tested versions, and the build fails if uv.lock is out of
# date with pyproject.toml. With the `otel` extra, traces need only OTEL_EXPORTER_OTLP_ENDPOINT.
# The wheels' compiled extensions (uvloop, asyncpg, SQLAlchemy's) carry debug symbols, a third
# of the virtualenv, for a debugger only: stripped.
COPY pyproject.toml uv.lock ./
RUN uv sync --locked --no-install-project --no-editable ${EXTRA:+--extra "$EXTRA"} --python python3 \
    && find /opt/venv -name '*.so' -exec strip --strip-unneeded {} +

COPY README.md ./
COPY service/ service/
RUN uv sync --locked --no-editable ${EXTRA:+--extra "$EXTRA"} --python python3


FROM python:3.12-slim AS runtime

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LOG_FORMAT=json
RUN useradd --system --no-log-init --user-group --no-create-home --uid 10001 app

WORKDIR /app
COPY --from=build /opt/venv /opt/venv
COPY alembic.ini ./
COPY migrations/ migrations/

# Files stay root-owned and read-only to the service user.
USER 10001:10001
EXPOSE 8000
# uvicorn serving service.main:app (python -m service passes these options to uvicorn). On
# SIGTERM it stops accepting, lets in-flight requests finish for up to 10 s, and exits 0;
# the Compose stop_grace_period is longer than that.
CMD ["python", "-m", "service", "--host", "0.0.0.0", "--port", "8000", "--timeout-graceful-shutdown", "10"]
