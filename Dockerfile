# trnews: the scheduler in a container.
#   docker build -t trnews .
#   docker run -d --name trnews -v trnews-var:/app/var \
#     -v "$PWD/config/trnews.toml:/app/config/trnews.toml:ro" \
#     -e TRNEWS_SECRET=... -e TRNEWS_SMTP_PASSWORD=... trnews
# The web side (subscribe, unsubscribe, archive) from the same image, behind a reverse proxy:
#   docker run -d --name trnews-web -v trnews-var:/app/var -p 127.0.0.1:8000:8000 \
#     -v "$PWD/config/trnews.toml:/app/config/trnews.toml:ro" \
#     -e TRNEWS_SECRET=... -e TRNEWS_SMTP_PASSWORD=... trnews trnews serve --host 0.0.0.0
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TRNEWS_CONFIG=/app/config/trnews.toml

WORKDIR /app

RUN groupadd --system --gid 10001 trnews \
    && useradd --system --uid 10001 --gid trnews --home-dir /app trnews

COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
COPY templates ./templates
COPY config ./config
RUN pip install . && mkdir -p /app/var && chown 10001:10001 /app/var

USER 10001:10001
VOLUME ["/app/var"]

# The config is mounted at /app/config/trnews.toml; point its storage.database and
# delivery.maildir into /app/var (e.g. "../var/trnews.db", as the example does).
CMD ["trnews", "run"]
