# The idp image: one image for every process (web, worker, beat, migrate); docker-compose.yml
# picks the command. No secret is baked in: every one comes from the environment at run time.

# --- build: every locked dependency (hash-checked) and the project, as wheels --------------------
FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml requirements.lock ./
COPY tools/lockfile.py ./tools/
# A lock out of date with pyproject.toml stops the build with one line (run `make lock`).
RUN python tools/lockfile.py check
RUN pip wheel --require-hashes --no-deps --wheel-dir /wheels -r requirements.lock \
    && pip install --no-index --find-links=/wheels setuptools
COPY README.md ./
COPY idp ./idp
COPY admin_ui ./admin_ui
COPY migrations ./migrations
# The build backend is the locked one, installed above: nothing is resolved here.
RUN pip wheel --no-deps --no-build-isolation --no-index --wheel-dir /wheels .

# --- run -----------------------------------------------------------------------------------------
FROM python:3.11-slim

# State folders for the embedded default (unused with PostgreSQL, except the beat schedule);
# XDG_RUNTIME_DIR puts gunicorn's control socket on /tmp, writable under a read-only root.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    IDP_INSTANCE_DIR=/var/lib/idp/instance \
    IDP_KEYS_DIR=/var/lib/idp/keys \
    XDG_RUNTIME_DIR=/tmp

# Install from the wheels only (no source tree in the image, no index): idp and exactly the locked
# versions of its runtime dependencies (the test extra's wheels stay in the build stage).
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels idp

# A fixed, unprivileged user; it owns only its state folder (the beat schedule lives there).
RUN groupadd --system --gid 10001 idp \
    && useradd --system --uid 10001 --gid idp --home-dir /var/lib/idp --shell /usr/sbin/nologin idp \
    && mkdir -p /var/lib/idp/instance /var/lib/idp/keys \
    && chown -R idp:idp /var/lib/idp
USER 10001:10001
WORKDIR /var/lib/idp

EXPOSE 8000

# Liveness with the standard library only (the slim image has no curl); urlopen raises on
# anything but a 2xx, so a failure exits non-zero.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]

CMD ["idp", "serve", "--host", "0.0.0.0", "--port", "8000"]
