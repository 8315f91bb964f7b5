# Sourced by the image builds: stage the wheels a build context's requirements resolve to.
#
# stage_wheels <ctx>: $ctx/requirements.txt under $ctx/constraints.txt, as wheels for the image's
# Python ($TARGET_PYTHON; resolved on the host, so pip must not pick a release that needs a newer
# 3.11 than the image has), into $ctx/wheels. The wheel cache ($CACHE/wheels) is tried first with no
# index: a warm build then spends no time asking PyPI about ~70 pinned distributions (30-50 s an
# image). Only a requirement the cache cannot satisfy sends pip to the index, which fills the cache.
# Unpinned names (the workspace's data tools) resolve to the newest cached release; an empty cache
# picks up newer ones.
stage_wheels() {
  local ctx="$1"
  local pip_target=(--only-binary=:all: --python-version "$TARGET_PYTHON" --disable-pip-version-check --quiet)
  local reqs=(-r "$ctx/requirements.txt" -c "$ctx/constraints.txt")
  mkdir -p "$ctx/wheels" "$CACHE/wheels"
  if "$PYTHON" -m pip download "${pip_target[@]}" --no-index --find-links "$CACHE/wheels" \
    -d "$ctx/wheels" "${reqs[@]}" >/dev/null 2>&1; then
    return 0
  fi
  log "some wheels are not cached: downloading them"
  rm -rf "$ctx/wheels" && mkdir -p "$ctx/wheels"
  "$PYTHON" -m pip download "${pip_target[@]}" -d "$CACHE/wheels" "${reqs[@]}" \
    || die "pip download failed"
  # Only the wheels this requirement set resolves to go into the context.
  "$PYTHON" -m pip download "${pip_target[@]}" --no-index --find-links "$CACHE/wheels" \
    -d "$ctx/wheels" "${reqs[@]}" || die "could not resolve the wheel set offline"
}
