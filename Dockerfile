# aicredits: one gateway process per container (scale out with more containers, see compose.yaml
# and docs/operations.md). Small: python:3.11-slim, the package and its wheels only, no compilers.
# Non-root (uid 10001). Health: GET /health/ready (database and Redis answer).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY src ./src
RUN python -m venv /opt/aicredits \
 && /opt/aicredits/bin/pip install --no-cache-dir --no-compile -c constraints.txt . \
 && find /opt/aicredits -name '__pycache__' -prune -exec rm -rf {} +

FROM python:3.11-slim
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/aicredits --create-home aicredits
COPY --from=build /opt/aicredits /opt/aicredits
ENV PATH=/opt/aicredits/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    AICREDITS_DATABASE_URL=sqlite:////var/lib/aicredits/aicredits.db \
    AICREDITS_STATE_DIR=/var/lib/aicredits
USER aicredits
WORKDIR /var/lib/aicredits
VOLUME /var/lib/aicredits
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health/ready', timeout=2).status != 200)"]
ENTRYPOINT ["aicredits"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "1"]
