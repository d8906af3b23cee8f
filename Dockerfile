# bidsqc BIDS-App image.
#   docker build -t bidsqc .
#   docker run --rm --read-only --network none -v /data:/data:ro -v /out:/out bidsqc /data /out participant
# BASE: any image with Python >= 3.10 and its venv module (default python:3.11-slim); WHEELS: a folder
# of wheels made beside the Dockerfile (pip wheel . -w wheels) to build without a package index.
ARG BASE=python:3.11-slim

FROM ${BASE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml setup.cfg README.md ./
COPY bidsqc ./bidsqc
# wheels* matches nothing unless ./wheels exists; setup.cfg keeps the COPY valid either way
COPY setup.cfg wheels* /src/wheels/
RUN python3 -m venv /opt/bidsqc \
 && if ls /src/wheels/*.whl >/dev/null 2>&1; then \
        /opt/bidsqc/bin/pip install --no-index --find-links /src/wheels . ; \
    else \
        /opt/bidsqc/bin/pip install . ; \
    fi \
 && /opt/bidsqc/bin/python -c "import bidsqc.model.ensemble as e; assert (e.DEFAULT_MODEL_DIR / 'model_card.json').is_file()"

FROM ${BASE}
ARG VERSION=unknown
LABEL org.opencontainers.image.title="bidsqc" \
      org.opencontainers.image.description="Automated quality control of T1-weighted brain MRI (BIDS-App)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="https://github.com/bidsqc/bidsqc" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /opt/bidsqc /opt/bidsqc
# nothing writes outside /tmp and the output folder: home, caches and TensorFlow's threads set here
ENV PATH=/opt/bidsqc/bin:${PATH} \
    HOME=/tmp \
    MPLCONFIGDIR=/tmp/matplotlib \
    XDG_CACHE_HOME=/tmp/.cache \
    TEMPLATEFLOW_HOME=/tmp/templateflow \
    NIPYPE_NO_ET=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    OMP_NUM_THREADS=1
RUN useradd --no-create-home --home-dir /tmp --shell /usr/sbin/nologin --uid 1000 bidsqc 2>/dev/null \
    || echo "bidsqc:x:1000:1000::/tmp:/usr/sbin/nologin" >> /etc/passwd
USER 1000
WORKDIR /tmp
ENTRYPOINT ["bidsqc"]
