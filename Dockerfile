# Racetrack: multi-stage, slim, non-root. Migrations run on start (`racetrack serve` applies them).
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
RUN useradd --system --uid 10001 --home-dir /srv racetrack && mkdir -p /data && chown racetrack /data
COPY --from=build /opt/venv /opt/venv
WORKDIR /srv
COPY --chown=racetrack alembic.ini ./
COPY --chown=racetrack migrations ./migrations
USER racetrack
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=2).status != 200)"
CMD ["racetrack", "serve"]
