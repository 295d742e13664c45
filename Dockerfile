# bids_tspo BIDS-App image (docs/hpc.md: build arguments, offline builds, Apptainer).
#   docker build -t bids_tspo .                                  # CUDA (default): PyPI's torch
#   docker build -t bids_tspo:cpu --build-arg VARIANT=cpu .      # CPU-only torch, much smaller
#   docker run --rm -u $(id -u):$(id -g) -v /data:/data:ro -v /out:/out bids_tspo /data /out participant
# Build arguments:
#   BASE_IMAGE       base of both stages (default python:3.11-slim; a mirror or local copy)
#   TORCH_INDEX_URL  index for torch: "default" = PyTorch's CPU index for VARIANT=cpu, PyPI for
#                    cuda; "" = pip's default index (PIP_INDEX_URL); or any URL
#   TEMPLATEFLOW     1 = bake TemplateFlow's MNI152NLin2009cAsym (needs its S3); 0 = bake none:
#                    runs use nilearn's shipped MNI152 (logged, and in dataset_description.json)
#   COMPILER         1 = g++ in the image for --compile (torch.compile, ~400 MB); 0 = none
#                    (--compile then falls back to eager mode with a warning)
#   VERSION          optional; must equal the package's version (make container-test passes it)
# Wheels placed in docker/wheels/ are preferred (pip --find-links): a site can build from a
# wheelhouse, e.g. the torch wheel for its CPU or CUDA.
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
ARG VARIANT=cuda
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=default
ARG TEMPLATEFLOW=1
ARG VERSION=
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_FIND_LINKS=/wheels
COPY docker/wheels /wheels
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# torch first, matching the variant: from the wheelhouse alone when it holds a match, else
# from TORCH_INDEX_URL (PyPI's Linux wheels bundle the CUDA 12 runtime).
RUN set -e; \
    if pip install --no-index "torch==${TORCH_VERSION}"; then exit 0; fi; \
    url="$TORCH_INDEX_URL"; \
    if [ "$url" = "default" ]; then \
      if [ "$VARIANT" = "cpu" ]; then url=https://download.pytorch.org/whl/cpu; else url=; fi; \
    fi; \
    if [ -n "$url" ]; then pip install "torch==${TORCH_VERSION}" --index-url "$url"; \
    else pip install "torch==${TORCH_VERSION}"; fi
COPY pyproject.toml README.md /src/
COPY bids_tspo /src/bids_tspo
RUN pip install /src \
    && v=$(python -c "import bids_tspo; print(bids_tspo.__version__)") \
    && if [ -n "$VERSION" ] && [ "$VERSION" != "$v" ]; then \
         echo "build arg VERSION=$VERSION differs from the package's version $v" >&2; exit 1; fi
# TemplateFlow files baked in (runs are offline); templateflow itself and what it pulled in are
# removed again, so only the files reach the runtime stage.
ENV TEMPLATEFLOW_HOME=/opt/templateflow
COPY docker/fetch_templates.py /tmp/fetch_templates.py
RUN set -e; mkdir -p /opt/templateflow; \
    if [ "$TEMPLATEFLOW" = "1" ]; then \
      pip freeze > /tmp/before.txt; \
      pip install "/src[container]"; \
      python /tmp/fetch_templates.py || { \
        echo "TemplateFlow fetch failed: build with --build-arg TEMPLATEFLOW=0 (the image then uses nilearn's MNI152), or put templateflow's wheels in docker/wheels/ and let the build reach TemplateFlow's S3" >&2; \
        exit 1; }; \
      pip freeze > /tmp/after.txt; \
      grep -vxF -f /tmp/before.txt /tmp/after.txt | sed 's/[=@ ].*//' | xargs -r pip uninstall -y; \
    fi; \
    chmod -R a+rX /opt/templateflow /opt/venv

FROM ${BASE_IMAGE} AS runtime
ARG VARIANT=cuda
ARG VERSION=
ARG COMPILER=1
LABEL org.opencontainers.image.title="bids_tspo" \
      org.opencontainers.image.description="BIDS-App: synthetic TSPO ([11C]PBR28) PET from T1-weighted MRI with a 3D U-Net" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="https://github.com/bids-tspo/bids_tspo" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="bids_tspo developers" \
      io.bids_tspo.variant="${VARIANT}"
# a C++ toolchain only for --compile (torch.compile's inductor CPU kernels, Triton's launcher)
RUN if [ "$COMPILER" = "1" ]; then \
      apt-get update && apt-get install -y --no-install-recommends g++ \
      && rm -rf /var/lib/apt/lists/*; fi
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/templateflow /opt/templateflow
# Any uid runs it (docker -u, Singularity): no HOME needed; caches go to a per-user folder of
# the temp dir (bids_tspo.app.cli.private_caches), the work dir defaults to the temp dir too.
ENV PATH=/opt/venv/bin:$PATH \
    BIDS_TSPO_VARIANT=${VARIANT} \
    TEMPLATEFLOW_HOME=/opt/templateflow \
    OMP_NUM_THREADS=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN useradd --no-create-home --home-dir /tmp --uid 1000 --shell /bin/sh tspo
USER tspo
WORKDIR /tmp
ENTRYPOINT ["bids_tspo"]
CMD ["--help"]
