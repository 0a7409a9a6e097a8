#!/usr/bin/env python3
"""Writes the test node's container images, so that none is ever pulled.

Each image is one layer holding one program (and, for a dynamically linked program, the shared
libraries `ldd` lists for it, at the paths `ldd` prints), in `docker save` format: the layer
tar, the image config, manifest.json and repositories. The launcher imports them with
`ctr -n k8s.io images import`; pods use them with `imagePullPolicy: Never`.

    images.py --out DIR NAME=PROGRAM [NAME=PROGRAM ...]

writes DIR/NAME.tar for each program, tagged leader-test/NAME:local with PROGRAM's file name as
the entrypoint (`/periodic`), and DIR/images.json mapping each NAME to its image reference.
Archives are reproducible (fixed times and owners), and not rewritten while the program, its
libraries and this script are unchanged. Prints DIR.
"""

import argparse
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile

REPOSITORY = "leader-test"
TAG = "local"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Directories every image has: mount points kubelet and runc expect (runc would create them, but
# the root filesystem may be read-only), and a writable-looking /tmp for programs that ask.
BASE_DIRS = ["dev", "etc", "proc", "sys", "tmp", "var", "var/run"]


def say(message):
    print(f"node: {message}", file=sys.stderr)


def shared_libraries(program):
    """The (path in the image, file on this machine) pairs of the libraries `ldd` lists."""
    result = subprocess.run(["ldd", program], capture_output=True, text=True)
    if result.returncode != 0:
        # "not a dynamic executable": a static program needs nothing.
        if "not a dynamic executable" in result.stdout + result.stderr:
            return []
        sys.exit(f"node: ldd {program} failed: {result.stderr.strip()}")
    libraries = []
    for line in result.stdout.splitlines():
        # "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
        match = re.search(r"(?:=>\s*)?(/\S+)\s+\(0x[0-9a-f]+\)", line)
        if match:
            path = match.group(1)
            libraries.append((path.lstrip("/"), os.path.realpath(path)))
        elif "=>" in line and "not found" in line:
            sys.exit(f"node: {program} needs a library that is missing here: {line.strip()}")
    return libraries


def stripped_copy(program, workdir):
    """A copy of `program` without debug information (much smaller for debug builds)."""
    copy = os.path.join(workdir, os.path.basename(program))
    if shutil.which("strip"):
        subprocess.run(["strip", "--strip-debug", "-o", copy, program], check=True)
    else:
        shutil.copyfile(program, copy)
    os.chmod(copy, 0o755)
    return copy


def layer_tar(files):
    """A reproducible tar of `files` ((path in image, local file) pairs) plus the base dirs."""
    buffer = io.BytesIO()
    dirs = set(BASE_DIRS)
    for path, _ in files:
        parent = os.path.dirname(path)
        while parent:
            dirs.add(parent)
            parent = os.path.dirname(parent)
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(dirs):
            info = tarfile.TarInfo(path)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o1777 if path == "tmp" else 0o755, 0
            tar.addfile(info)
        for path, local in sorted(files):
            info = tarfile.TarInfo(path)
            info.size, info.mode, info.mtime = os.path.getsize(local), 0o755, 0
            with open(local, "rb") as data:
                tar.addfile(info, data)
    return buffer.getvalue()


def inputs_digest(reference, program, libraries):
    """A digest of everything an archive is made of: this script, the name, the files."""
    digest = hashlib.sha256()
    with open(__file__, "rb") as script:
        digest.update(script.read())
    digest.update(reference.encode())
    for path, local in [("", program)] + libraries:
        digest.update(f"\0{path}\0".encode())
        with open(local, "rb") as data:
            for chunk in iter(lambda: data.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def image_archive(name, program, out_dir):
    """Writes out_dir/NAME.tar for `program` unless it is up to date; returns the image
    reference and whether it was written."""
    reference = f"{REPOSITORY}/{name}:{TAG}"
    archive = os.path.join(out_dir, f"{name}.tar")
    libraries = shared_libraries(program)
    inputs = inputs_digest(reference, program, libraries)
    stamp = archive + ".inputs"  # the inputs of the archive there
    if os.path.exists(archive) and os.path.exists(stamp):
        with open(stamp) as previous:
            if previous.read() == inputs:
                return reference, False
    with tempfile.TemporaryDirectory() as workdir:
        entrypoint = "/" + os.path.basename(program)
        files = [(entrypoint.lstrip("/"), stripped_copy(program, workdir))] + libraries
        layer = layer_tar(files)
    layer_digest = hashlib.sha256(layer).hexdigest()
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "created": "1970-01-01T00:00:00Z",
            "config": {"Entrypoint": [entrypoint], "Env": [PATH_ENV], "WorkingDir": "/"},
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer_digest}"]},
            "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "tests/node/images.py"}],
        },
        sort_keys=True,
    ).encode()
    config_digest = hashlib.sha256(config).hexdigest()
    members = {
        f"{layer_digest}/VERSION": b"1.0",
        f"{layer_digest}/layer.tar": layer,
        f"{config_digest}.json": config,
        "manifest.json": json.dumps(
            [
                {
                    "Config": f"{config_digest}.json",
                    "RepoTags": [reference],
                    "Layers": [f"{layer_digest}/layer.tar"],
                }
            ]
        ).encode(),
        "repositories": json.dumps({f"{REPOSITORY}/{name}": {TAG: layer_digest}}).encode(),
    }
    partial = archive + ".partial"
    with tarfile.open(partial, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(dir_info(layer_digest))
        for path, data in sorted(members.items()):
            info = tarfile.TarInfo(path)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    os.replace(partial, archive)
    with open(stamp, "w") as out:
        out.write(inputs)
    return reference, True


def dir_info(path):
    info = tarfile.TarInfo(path)
    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
    return info


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="directory for the archives and images.json")
    parser.add_argument("images", nargs="+", metavar="NAME=PROGRAM")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    references = {}
    for spec in args.images:
        name, _, program = spec.partition("=")
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", name) or not program:
            parser.error(f"expected NAME=PROGRAM with a lowercase NAME, got {spec!r}")
        if not os.access(program, os.X_OK):
            sys.exit(f"node: {program} is not an executable file")
        references[name], written = image_archive(name, program, args.out)
        say(f"image {references[name]} {'written' if written else 'unchanged'}: {program}")
    with open(os.path.join(args.out, "images.json"), "w") as out:
        json.dump(references, out, indent=2, sort_keys=True)
        out.write("\n")
    print(os.path.abspath(args.out))


if __name__ == "__main__":
    main()
