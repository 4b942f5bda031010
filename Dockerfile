# moodring in a container: the CPU build of torch (pinned; the default wheel is a multi-GB
# CUDA build), then moodring with its model and demo data. Used by compose.yaml.
FROM python:3.11-slim
RUN pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
WORKDIR /app
COPY pyproject.toml README.md ./
COPY bot bot
COPY nlp nlp
COPY connectors connectors
COPY models models
RUN pip install --no-cache-dir . && useradd --system --home /data moodring && mkdir -p /data \
    && chown moodring /data
USER moodring
WORKDIR /data
# The int8 model is built on first start into the cache; keep it on the volume.
ENV MOODRING_CACHE_DIR=/data/cache
ENTRYPOINT ["moodring"]
CMD ["run"]
