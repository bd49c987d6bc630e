# The lead scorer's image: `docker build -t lead-scorer .`
# Build stage: wheels of the package and its runtime dependencies only (no
# dev extras). Runtime stage: those wheels installed, nothing else.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
# scorer/schemas is a link to ../schemas: both go in, so the wheel holds them.
COPY schemas ./schemas
COPY scorer ./scorer
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin scorer
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels lead-scorer \
    && rm -rf /wheels
USER 10001
# Listen on every interface of the container (the default is loopback only);
# port 9108 serves /metrics, /healthz and /readyz.
ENV PYTHONUNBUFFERED=1 \
    SCORER_METRICS__HOST=0.0.0.0 \
    SCORER_METRICS__PORT=9108
EXPOSE 9108
# Environment variables win over the config file, so these two replace any
# metrics.host or metrics.port of a mounted config. Change the port with
# SCORER_METRICS__PORT, which the check follows; a --metrics-port flag wins
# over the variable, but the check does not see it.
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; port = os.environ.get('SCORER_METRICS__PORT', '9108'); urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=2)"]
ENTRYPOINT ["scorer"]
CMD ["run"]
