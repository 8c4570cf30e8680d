# syntax=docker/dockerfile:1
# One image for both commands: `python -m gateway` (the default) and `python -m publisher`
# (set as the container's command). Build: docker build -t price-gateway:0.1.0 .
# Pin the base by digest in CI (python:3.11-slim-trixie@sha256:...) for reproducible builds.
ARG PYTHON_IMAGE=python:3.11-slim-trixie

# --- build: resolve and install the dependencies into a virtualenv ------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md requirements.lock ./
COPY contracts ./contracts
COPY gateway ./gateway
COPY publisher ./publisher
# Exactly the locked versions (requirements.lock, the ones the tests ran against; all ship
# wheels, so no compiler is needed), then the project without resolving anything more,
# and pip check that the two agree. Then drop the project itself and the packaging tools:
# the code runs from /app below, with its data files (page, AsyncAPI document) as they are
# in the tree.
RUN pip install --no-deps -r requirements.lock \
 && pip install --no-deps . \
 && pip check \
 && pip uninstall --yes price-gateway \
 && pip uninstall --yes pip setuptools \
 && python -m compileall -q /opt/venv/lib

# --- runtime: the slim base, the virtualenv, the code; no pip, no compiler ----------------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="price-gateway" \
      org.opencontainers.image.description="SSE price gateway and demo publisher over NATS JetStream"
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin app
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY --chown=root:root contracts ./contracts
COPY --chown=root:root gateway ./gateway
COPY --chown=root:root publisher ./publisher
RUN python -m compileall -q /app
# PYTHONDONTWRITEBYTECODE: the root filesystem is read-only in the cluster.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    GATEWAY_HOST=0.0.0.0 \
    GATEWAY_PORT=8000
# Numeric, so that Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
EXPOSE 8000
# uvicorn (gateway) and FastStream (publisher) handle SIGTERM themselves: no init needed.
CMD ["python", "-m", "gateway"]
