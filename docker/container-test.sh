#!/usr/bin/env bash
# make container-test: build the CPU image and run it as a user would, all with --network none.
# Needs a Docker daemon (on the project's machines: bash ../shared/tools/docker-up.sh) and, to
# build offline-capably, the torch wheel in docker/wheels/. Environment:
#   BASE_IMAGE (python:3.11-slim), TORCH_INDEX_URL (default), TEMPLATEFLOW (0), COMPILER (0),
#   IMAGE (bids_tspo:cpu-test), BUILD_NETWORK (host), PYTHON (python3: reads the version).
# Takes about 10 minutes on 2 cores once the image layers are cached (see docs/hpc.md).
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE=${IMAGE:-bids_tspo:cpu-test}
PYTHON=${PYTHON:-python3}
VERSION=$($PYTHON -c "import re;print(re.search(r'__version__ = \"(.+?)\"', open('bids_tspo/__init__.py').read())[1])")
start=$(date +%s)
fail() { echo "container-test FAILED: $*" >&2; exit 1; }
step() { echo "== $* ($(( $(date +%s) - start )) s)"; }

step "build $IMAGE"
docker build --network "${BUILD_NETWORK:-host}" -t "$IMAGE" \
    --build-arg VARIANT=cpu --build-arg VERSION="$VERSION" \
    --build-arg BASE_IMAGE="${BASE_IMAGE:-python:3.11-slim}" \
    --build-arg TORCH_INDEX_URL="${TORCH_INDEX_URL-default}" \
    --build-arg TEMPLATEFLOW="${TEMPLATEFLOW:-0}" --build-arg COMPILER="${COMPILER:-0}" .
docker image inspect "$IMAGE" --format 'image size: {{.Size}} bytes'

root=$(mktemp -d /tmp/bids_tspo_ctest.XXXXXX)
trap 'docker run --rm --network none -v "$root:/r" --entrypoint sh -u 0 "$IMAGE" -c "rm -rf /r/*" >/dev/null 2>&1; rm -rf "$root"' EXIT
chmod 755 "$root"
mkdir -p "$root/home" "$root/tmp" "$root/out" "$root/out_ro" && chmod 777 "$root/out" "$root/out_ro" "$root/tmp"
chmod 755 "$root/home"
run() { docker run --rm --network none "$@"; }

step "--version"
v=$(run "$IMAGE" --version) || fail "--version exit $?"
[[ "$v" == *"$VERSION"* ]] || fail "--version printed '$v', wanted $VERSION"

step "phantom (3 subjects, small; the last is MRI-only) made by the image as a foreign uid"
mkdir -p "$root/bids" && chmod 777 "$root/bids"
run -u 4321:4321 -v "$root/bids:/bids" --entrypoint bids_tspo-phantom "$IMAGE" /bids \
    --subjects 3 --size small || fail "phantom exit $?"
bad=$(find "$root/bids" -type f ! -perm -0644 | head -3)
[ -z "$bad" ] || fail "phantom files not 0644: $bad"

step "participant as a foreign uid, no -w"
run -u 4321:4321 -v "$root/bids:/data:ro" -v "$root/out:/out" "$IMAGE" /data /out participant \
    --sloppy --participant-label 01 02 || fail "participant exit $?"
[ -n "$(find "$root/out/sub-01" -name '*desc-suv_pet.nii.gz')" ] || fail "no SUV map"
bad=$(find "$root/out" -type f ! -perm -0644 | head -3)
[ -z "$bad" ] || fail "files not 0644 under umask 022: $bad"
grep -q "work directory /tmp/bids_tspo_work_4321_" "$root"/out/logs/*.log || fail "work dir not logged"

step "Singularity-like: --read-only, foreign uid, host HOME and /tmp bound, no -w"
run --read-only -u 4321:4321 -e HOME=/home/u -v "$root/home:/home/u" -v "$root/tmp:/tmp" \
    -v "$root/bids:/data:ro" -v "$root/out_ro:/out" "$IMAGE" /data /out participant \
    --sloppy --participant-label 01 || fail "read-only participant exit $?"
[ -z "$(ls -A "$root/home")" ] || fail "written into HOME: $(ls -A "$root/home")"
ls -d "$root"/tmp/bids_tspo_work_4321_* >/dev/null || fail "no work dir in the bound /tmp"

step "group level (--folds 2 --epochs 1 --image-size 32 --sloppy)"
run -u 4321:4321 -e HOME=/home/u -v "$root/home:/home/u" -v "$root/bids:/data:ro" \
    -v "$root/out:/out" "$IMAGE" /data /out group --folds 2 --epochs 1 --image-size 32 --sloppy \
    || fail "group exit $?"
model=$(ls -d "$root"/out/models/*/ | head -1)
[ -n "$model" ] || fail "no model bundle"
[ -f "$root/out/group_report.html" ] || fail "no group report"
[ -z "$(ls -A "$root/home")" ] || fail "written into HOME: $(ls -A "$root/home")"

step "participant with --model (synthesis)"
run -u 4321:4321 -v "$root/bids:/data:ro" -v "$root/out:/out" "$IMAGE" /data /out participant \
    --sloppy --participant-label 01 --model "/out/models/$(basename "$model")" \
    || fail "synthesis exit $?"
[ -n "$(find "$root/out/sub-01" -name '*desc-synth_pet.nii.gz')" ] || fail "no synthetic map"
bad=$(find "$root/out" -type f ! -perm -0644 | head -3)
[ -z "$bad" ] || fail "files not 0644: $bad"
grep -q '"Tag": "bids_tspo:'"$VERSION"'-cpu"' "$root/out/dataset_description.json" || fail "no container tag"
grep -q "nilearn" "$root/out/dataset_description.json" || [ "${TEMPLATEFLOW:-0}" = 1 ] || fail "template not stated"
step "container-test passed"
