# syntax=docker/dockerfile:1
# The provisioner service: `docker build -t provisioner .` (or `make docker`), then
#   docker run -p 8080:8080 provisioner                      # SQLite inside the container
#   docker run provisioner mock-adapter --host 0.0.0.0        # the mock Tech Adapter
# docker-compose.yml runs it with PostgreSQL and the mock adapter.
ARG PYTHON_IMAGE=python:3.11-slim

# --- build: the wheel (it carries the migrations and the examples) -------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
COPY pyproject.toml README.md ./
COPY migrations ./migrations
COPY examples ./examples
COPY src ./src
RUN pip wheel --no-deps --wheel-dir /dist .

# --- runtime -------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore \
    PROVISIONER_HOST=0.0.0.0 \
    PROVISIONER_PORT=8080 \
    PROVISIONER_LOG_FORMAT=json \
    PROVISIONER_DATABASE_URL=sqlite+aiosqlite:////app/data/provisioner.db

RUN groupadd --system --gid 10001 provisioner \
    && useradd --system --uid 10001 --gid provisioner --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin provisioner

# Dependencies first, from the hashed lock, so that a code change reuses this layer.
COPY requirements.lock /tmp/requirements.lock
RUN pip install --require-hashes --only-binary=:all: -r /tmp/requirements.lock \
    && rm /tmp/requirements.lock

COPY --from=build /dist/ /tmp/dist/
RUN pip install --no-deps /tmp/dist/*.whl && pip check && rm -r /tmp/dist

# /app/examples for PROVISIONER_CONFIG=/app/examples/config.yaml; /app/data is the one
# writable place, for the default SQLite database (mount a volume there to keep it).
WORKDIR /app
COPY examples ./examples
RUN install -d -o provisioner -g provisioner /app/data
USER provisioner

EXPOSE 8080
# Liveness only; readiness (database reachable and migrated) is GET /readyz.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PROVISIONER_PORT', '8080'), timeout=4)"]
# uvicorn drains in-flight work on SIGTERM (PROVISIONER_SHUTDOWN_GRACE_SECONDS, default 20 s):
# give the container longer than that to stop (compose: stop_grace_period; docker stop -t 30).
STOPSIGNAL SIGTERM
ENTRYPOINT ["provisioner"]
CMD ["serve"]
