# bidsqc BIDS-App image: docker build -t bidsqc . ; docker run -v /data:/data:ro -v /out:/out bidsqc /data /out participant
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 TF_CPP_MIN_LOG_LEVEL=2 \
    TEMPLATEFLOW_HOME=/opt/templateflow MPLCONFIGDIR=/tmp/matplotlib
WORKDIR /src
COPY pyproject.toml setup.cfg README.md ./
COPY bidsqc ./bidsqc
RUN pip install . && rm -rf /src
# Optional: bake TemplateFlow templates into the image (needs network at build time):
# RUN python -c "from templateflow import api; api.get('MNI152NLin2009cAsym', resolution=2, suffix=['T1w','mask'])"
WORKDIR /tmp
ENTRYPOINT ["bidsqc"]
