# The API image: dependencies and the package are installed into a virtualenv in a build stage;
# the runtime stage gets only that virtualenv plus what `alembic upgrade head` reads.
FROM python:3.12-slim AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src

# Dependency layer: keyed on pyproject.toml alone, so editing service/ does not reinstall it.
# The build backend is installed here too, so the package below builds without the network.
COPY pyproject.toml ./
RUN python -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb")); print("\n".join(p["project"]["dependencies"] + p["build-system"]["requires"]))' > /tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt

COPY README.md ./
COPY service/ service/
RUN pip install --no-cache-dir --no-deps --no-build-isolation .


FROM python:3.12-slim AS runtime

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
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
