# Sourced by the image builds: stage the wheels a build context's requirements resolve to, and keep
# staged trees (wheel sets, npm installs) for the next build with the same inputs.
#
# stage_wheels <ctx> <name>: $ctx/requirements.txt under $ctx/constraints.txt, as wheels for the
# image's Python ($TARGET_PYTHON; resolved on the host, so pip must not pick a release that needs a
# newer 3.11 than the image has), into $ctx/wheels. The set staged last time for the same
# requirements, constraints and wheel cache is reused as it is (pip's offline resolution of ~70
# pinned distributions takes 5-15 s an image, the longer on a busy machine). Otherwise the wheel
# cache ($CACHE/wheels) is tried with no index: a warm build then spends no time asking PyPI (30-50 s
# an image). Only a requirement the cache cannot satisfy sends pip to the index, which fills the
# cache. Unpinned names (the workspace's data tools) resolve to the newest cached release; an empty
# cache picks up newer ones.
stage_wheels() {
  local ctx="$1" name="wheels-$2"
  if reuse_staged "$name" "$(wheel_set_key "$ctx")" "$ctx/wheels"; then
    log "$2: the wheel set staged for these requirements last time"
    return 0
  fi
  resolve_wheels "$ctx"
  # Keyed after resolving: a download adds wheels to the cache, which the next build then lists.
  keep_staged "$name" "$(wheel_set_key "$ctx")" "$ctx/wheels"
}

wheel_set_key() {
  { cat "$1/requirements.txt" "$1/constraints.txt"; echo "$TARGET_PYTHON"; ls "$CACHE/wheels" 2>/dev/null; } \
    | staged_key
}

resolve_wheels() {
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

# A staged tree is kept as $CACHE/staged/<name>/<key>, one key per name (a new key replaces the old
# tree). Copies are hard links where the context and the cache share a filesystem: nothing writes
# into a staged file after staging.
#
# staged_key: the key of a staged tree's inputs, read from stdin.
staged_key() { sha256sum | cut -c1-32; }

# reuse_staged <name> <key> <dir>: copy the kept tree into <dir>; fails when there is none.
reuse_staged() {
  local kept="$CACHE/staged/$1/$2"
  [ -f "$kept.done" ] || return 1
  rm -rf "$3" && mkdir -p "$3"
  cp -al "$kept/." "$3/" 2>/dev/null || { rm -rf "$3" && mkdir -p "$3" && cp -a "$kept/." "$3/"; }
}

# keep_staged <name> <key> <dir>: keep <dir>, as staged now, for reuse_staged.
keep_staged() {
  local root="$CACHE/staged/$1"
  rm -rf "$root" && mkdir -p "$root/$2"
  cp -al "$3/." "$root/$2/" 2>/dev/null || { rm -rf "$root/$2" && mkdir -p "$root/$2" && cp -a "$3/." "$root/$2/"; }
  touch "$root/$2.done"
}
