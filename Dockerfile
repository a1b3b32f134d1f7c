# The fleetrun server as a container image.
#
#   docker build -t fleetrun .
#   docker run -d -p 8470:8470 -v fleetrun-data:/var/lib/fleetrun fleetrun
#
# It runs as the unprivileged user `fleetrun` (uid 10001), keeps everything it writes
# (SQLite database, output, admin token, TLS CA) on the /var/lib/fleetrun volume, serves
# HTTPS with its own CA unless given other `fleetrun server` options, and reports healthy
# when /readyz answers 200 (started, database answering). docs/operations.md, containers.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY src ./src
RUN python -m pip wheel --no-cache-dir --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    FLEETRUN_DATA_DIR=/var/lib/fleetrun \
    FLEETRUN_HOST=0.0.0.0 \
    FLEETRUN_PORT=8470
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/fleetrun \
        --shell /usr/sbin/nologin fleetrun \
    && install -d -o fleetrun -g fleetrun -m 0700 /var/lib/fleetrun
COPY --from=build /wheels /wheels
RUN python -m pip install --no-cache-dir --no-index --find-links /wheels fleetrun \
    && rm -rf /wheels
COPY packaging/docker/healthcheck.py /usr/local/bin/fleetrun-healthcheck
USER fleetrun
VOLUME ["/var/lib/fleetrun"]
EXPOSE 8470
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "/usr/local/bin/fleetrun-healthcheck"]
ENTRYPOINT ["fleetrun", "server"]
CMD ["--tls-self-signed"]
