# Vitrine's API server and job worker, for people who deploy with containers (docker-compose.yml).
# torch is pinned to 2.13.0 by pyproject.toml; point PIP_EXTRA_INDEX_URL at PyTorch's CPU wheel index
# to install its CPU build instead of the default one with CUDA libraries (gigabytes this never uses).
FROM python:3.11-slim-bookworm

ARG PIP_EXTRA_INDEX_URL=""
ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 VITRINE_HOME=/data

# MediaPipe (shop the look) needs these two shared libraries at import time.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY vitrine ./vitrine
# MediaPipe comes without its declared dependencies, which would replace numpy and OpenCV (Makefile).
RUN pip install . && pip install --no-deps mediapipe==0.10.21

RUN useradd --create-home --uid 1000 vitrine && mkdir -p /data && chown vitrine /data
USER vitrine
VOLUME /data
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=4)"
CMD ["vitrine", "serve", "--host", "0.0.0.0", "--port", "8000", "--no-demo"]
