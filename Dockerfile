# Racetrack: multi-stage, slim, non-root. `racetrack serve` applies migrations (shipped in the wheel)
# before it listens. Configure with environment variables (README); set DATABASE_URL in production,
# else an embedded PostgreSQL keeps its data in the /data volume.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY migrations ./migrations
RUN python -m venv /opt/venv && /opt/venv/bin/pip install --upgrade pip && /opt/venv/bin/pip install .

FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    RACETRACK_HOST=0.0.0.0 RACETRACK_PORT=8000 RACETRACK_WORKERS=2 RACETRACK_DATA_DIR=/data
RUN useradd --system --uid 10001 --home-dir /data racetrack && mkdir -p /data && chown racetrack /data
COPY --from=build /opt/venv /opt/venv
WORKDIR /data
USER racetrack
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD python -c "import os, sys, urllib.request; port = os.environ.get('RACETRACK_PORT', '8000'); sys.exit(urllib.request.urlopen(f'http://127.0.0.1:{port}/readyz', timeout=2).status != 200)"
CMD ["racetrack", "serve"]
