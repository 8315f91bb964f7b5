"""Images for the local node, without a registry: built here and imported into containerd.

* `pause` (the pod sandbox) and `coredns` are single static binaries built by hack/provision-kube.sh;
  their images are written here as docker-archive tarballs (one layer, fixed timestamps: the same
  binary always gives the same image id) and imported with `ctr images import`.
* The workspace, operator, API, gateway and egress proxy (squid) images are built by Docker
  (hack/build-images.sh) and moved with `docker save | ctr images import -`.

An image is imported only when containerd lacks it or holds another id (config digest) for its tag.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .host import crictl
from .kube import REPO
from .layout import NODE_ROOT, PAUSE_IMAGE, containerd_socket
from .procs import ServerError

COREDNS_IMAGE = "docker.io/agentry/coredns:1.12.4"
BUILD_IMAGES = REPO / "hack" / "build-images.sh"
Say = Callable[[str], None]


def _normalize(tag: str) -> str:
    """containerd's full reference for a short docker tag (agentry/x:y -> docker.io/agentry/x:y)."""
    name = tag
    first = name.split("/", 1)[0]
    if "/" not in name:
        name = f"docker.io/library/{name}"
    elif "." not in first and ":" not in first and first != "localhost":
        name = f"docker.io/{name}"
    return name


def containerd_image_id(assets: Path, tag: str) -> str | None:
    """The image id (config digest) containerd has for tag, or None."""
    result = crictl(assets, "inspecti", "-o", "json", _normalize(tag), check=False)
    if result.returncode != 0:
        return None
    status = json.loads(result.stdout).get("status", {})
    return str(status.get("id")) if status.get("id") else None


def _ctr_import(archive: Path | None, stdin: subprocess.Popen[bytes] | None = None) -> None:
    argv = ["ctr", "--address", str(containerd_socket()), "-n", "k8s.io", "images", "import"]
    argv.append(str(archive) if archive else "-")
    stdin_stream = stdin.stdout if stdin else None
    result = subprocess.run(argv, stdin=stdin_stream, capture_output=True, timeout=900, check=False)
    if stdin is not None:
        assert stdin.stdout is not None
        stdin.stdout.close()
        if stdin.wait(60) != 0:
            err = stdin.stderr.read().decode(errors="replace") if stdin.stderr else ""
            raise ServerError(f"`docker save` failed: {err.strip()}")
    if result.returncode != 0:
        raise ServerError(f"`ctr images import` failed: {result.stderr.decode(errors='replace').strip()}")


# containerd's import sometimes fails unpacking a layer over a snapshot it lost track of (seen once:
# "parent snapshot sha256:... does not exist"; an identical rerun passed). Removing the half-imported
# image and importing once more gets past it; any other failure is reported as it is.
SNAPSHOT_FLAKE = ("parent snapshot", "does not exist")


def _ctr_rmi(tag: str) -> None:
    argv = ["ctr", "--address", str(containerd_socket()), "-n", "k8s.io", "images", "rm", _normalize(tag)]
    subprocess.run(argv, capture_output=True, timeout=120, check=False)


def import_retrying(tag: str, do_import: Callable[[], None], say: Say) -> None:
    """`do_import()`, and once more after `ctr images rm tag` if containerd lost a parent snapshot."""
    try:
        do_import()
    except ServerError as exc:
        if not all(part in str(exc) for part in SNAPSHOT_FLAKE):
            raise
        say(f"    {tag}: containerd lost a parent snapshot while importing; removing it and retrying once")
        _ctr_rmi(tag)
        do_import()


# -- single-binary images ---------------------------------------------------------------------------


@dataclass
class BinaryImage:
    tag: str  # full reference, e.g. docker.io/agentry/pause:3.10
    binary: Path
    path_in_image: str
    user: str
    args: tuple[str, ...] = ()

    def archive(self) -> tuple[bytes, str]:
        """The docker-archive tarball and the image id (sha256 of its config)."""
        layer = io.BytesIO()
        with tarfile.open(fileobj=layer, mode="w", format=tarfile.PAX_FORMAT) as tar:
            data = self.binary.read_bytes()
            info = tarfile.TarInfo(self.path_in_image.lstrip("/"))
            info.size, info.mode, info.mtime = len(data), 0o755, 0
            tar.addfile(info, io.BytesIO(data))
            for d in ("tmp", "etc"):
                dinfo = tarfile.TarInfo(d)
                dinfo.type, dinfo.mode, dinfo.mtime = tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755, 0
                tar.addfile(dinfo)
        layer_bytes = layer.getvalue()
        diff_id = "sha256:" + hashlib.sha256(layer_bytes).hexdigest()
        config = {
            "architecture": "amd64",
            "os": "linux",
            "created": "1970-01-01T00:00:00Z",
            "config": {
                "Entrypoint": [self.path_in_image],
                "Cmd": list(self.args),
                "User": self.user,
                "Env": ["PATH=/"],
            },
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "agentry images.py"}],
        }
        config_bytes = json.dumps(config, sort_keys=True).encode()
        config_digest = hashlib.sha256(config_bytes).hexdigest()
        short = self.tag.removeprefix("docker.io/")
        manifest = [{"Config": f"{config_digest}.json", "RepoTags": [short], "Layers": ["layer/layer.tar"]}]
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w") as tar:
            for name, blob in (
                (f"{config_digest}.json", config_bytes),
                ("layer/layer.tar", layer_bytes),
                ("manifest.json", json.dumps(manifest).encode()),
            ):
                info = tarfile.TarInfo(name)
                info.size, info.mtime = len(blob), 0
                tar.addfile(info, io.BytesIO(blob))
        return out.getvalue(), f"sha256:{config_digest}"

    def ensure(self, assets: Path, say: Say) -> bool:
        """Import into containerd unless it has this exact image; True if imported."""
        data, image_id = self.archive()
        if containerd_image_id(assets, self.tag) == image_id:
            return False
        t0 = time.monotonic()
        with tempfile.NamedTemporaryFile(dir=NODE_ROOT, suffix=".tar") as f:
            f.write(data)
            f.flush()
            import_retrying(self.tag, lambda: _ctr_import(Path(f.name)), say)
        if containerd_image_id(assets, self.tag) != image_id:
            raise ServerError(f"{self.tag} was imported but containerd does not list it")
        say(f"    imported {self.tag} ({len(data) // 1024} KiB) in {time.monotonic() - t0:.1f} s")
        return True


def pause_image(assets: Path) -> BinaryImage:
    return BinaryImage(PAUSE_IMAGE, assets / "pause", "/pause", "65535:65535")


def coredns_image(assets: Path) -> BinaryImage:
    return BinaryImage(COREDNS_IMAGE, assets / "coredns", "/coredns", "65532:65532")


def ensure_pause_image(assets: Path, say: Say) -> None:
    pause_image(assets).ensure(assets, say)


# -- Docker-built images ----------------------------------------------------------------------------


@dataclass
class BuiltImages:
    docker_host: str
    tags: dict[str, str]  # component (workspace, operator, api, gateway) -> tag


def build_images(
    say: Say, components: tuple[str, ...] = ("workspace", "operator", "api", "gateway", "squid")
) -> BuiltImages:
    """Run hack/build-images.sh (Docker, offline, cached); its progress goes to our stderr."""
    t0 = time.monotonic()
    result = subprocess.run(
        ["bash", str(BUILD_IMAGES), *components], stdout=subprocess.PIPE, text=True, check=False, timeout=3600
    )
    if result.returncode != 0:
        raise ServerError(f"hack/build-images.sh failed with exit code {result.returncode} (output above)")
    lines = [ln for ln in result.stdout.splitlines() if "=" in ln]
    values = dict(ln.split("=", 1) for ln in lines)
    tags = {c: values[f"IMAGE_{c.upper()}"] for c in components}
    say(f"    images built in {time.monotonic() - t0:.0f} s: {', '.join(tags.values())}")
    return BuiltImages(values.get("DOCKER_HOST", ""), tags)


def docker_image_id(tag: str, docker_host: str) -> str:
    env = {**os.environ, "DOCKER_HOST": docker_host} if docker_host else dict(os.environ)
    result = subprocess.run(
        ["docker", "image", "inspect", "-f", "{{.Id}}", tag],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if result.returncode != 0:
        raise ServerError(f"docker has no image {tag}: {result.stderr.strip()}")
    return result.stdout.strip()


def load_docker_image(assets: Path, tag: str, docker_host: str, say: Say) -> bool:
    """docker save | ctr import, unless containerd already has this image id; True if imported."""
    image_id = docker_image_id(tag, docker_host)
    if containerd_image_id(assets, tag) == image_id:
        return False
    t0 = time.monotonic()
    env = {**os.environ, "DOCKER_HOST": docker_host} if docker_host else dict(os.environ)

    def save_and_import() -> None:
        argv = ["docker", "save", tag]
        save = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        _ctr_import(None, stdin=save)

    import_retrying(tag, save_and_import, say)
    if containerd_image_id(assets, tag) != image_id:
        raise ServerError(f"{tag} was imported but containerd lists another id for it")
    say(f"    loaded {tag} into the node in {time.monotonic() - t0:.0f} s")
    return True
