"""Checkpoints from the Hugging Face Hub, for people who have internet: `vitrine models pull NAME`.

The Hub's plain HTTP API is enough (no huggingface_hub client): `GET {hub}/api/models/{repo}` lists a
repository's files at a commit, and `GET {hub}/{repo}/resolve/{commit}/{file}` serves each one. Files are
downloaded into a temporary folder that becomes `<home>/checkpoints/<name>` only when all of them
arrived, so a broken pull never leaves a half checkpoint that `--encoder` would pick up. The hub URL is
a setting: a mirror, or the test's local server, takes the same path.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vitrine.errors import InvalidInput, ModelUnavailable
from vitrine.models import open_clip_siglip
from vitrine.models.clip_encoder import uses_open_clip

# Short names of the fashion checkpoints worth having; any other "owner/name" Hub id is accepted too.
KNOWN: dict[str, str] = {
    "fashion-clip": "patrickjohncyh/fashion-clip",
    "marqo-fashionsiglip": "Marqo/marqo-fashionSigLIP",
}
REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}$")
NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
SOURCE_FILE = "vitrine-source.json"
# Weights in formats PyTorch does not load, and repository furniture: not downloaded.
SKIPPED_SUFFIXES = (".h5", ".msgpack", ".onnx", ".ot", ".tflite", ".gitattributes", ".png", ".jpg", ".gif")
Progress = Callable[[int, int], None]  # bytes done, bytes in all (0 when the hub gives no sizes)


@dataclass(frozen=True)
class PulledCheckpoint:
    name: str
    repo: str
    path: Path
    commit: str
    files: int
    bytes: int


def hub_dir(home: Path) -> Path:
    return home / "checkpoints"


def resolve(name_or_id: str) -> tuple[str, str]:
    """A short name or a Hub id to (local name, repo id): "fashion-clip" -> ("fashion-clip",
    "patrickjohncyh/fashion-clip"); "org/Some-Model" -> ("some-model", "org/Some-Model")."""
    text = name_or_id.strip()
    if text.lower() in KNOWN:
        return text.lower(), KNOWN[text.lower()]
    if not REPO_ID.match(text) or ".." in text:
        known = ", ".join(KNOWN)
        raise InvalidInput(f"{name_or_id!r} is neither a known checkpoint ({known}) nor a Hub id like "
                           "'owner/name'", field="name")
    return text.split("/", 1)[1].lower(), text


def pulled_path(home: Path, name: str) -> Path | None:
    """The folder of a pulled checkpoint by its local name, if it is there."""
    if not NAME.match(name):
        return None
    folder = hub_dir(home) / name
    return folder if (folder / "config.json").is_file() or (folder / open_clip_siglip.CONFIG).is_file() else None


def wanted_files(siblings: list[dict[str, Any]]) -> list[tuple[str, int]]:
    """The files a checkpoint needs: weights in one format (safetensors over .bin), configs, tokenizer."""
    files = [(str(s["rfilename"]), int(s.get("size") or 0)) for s in siblings if s.get("rfilename")]
    files = [(f, n) for f, n in files if not f.lower().endswith(SKIPPED_SUFFIXES) and _safe_relative(f)]
    if any(f.endswith(".safetensors") for f, _ in files):
        files = [(f, n) for f, n in files if not f.endswith((".bin", ".pt", ".pth"))]
    return files


def _safe_relative(name: str) -> bool:
    """A file name the hub lists must stay inside the checkpoint folder."""
    parts = Path(name).parts
    return bool(parts) and not Path(name).is_absolute() and ".." not in parts and not name.startswith("/")


def pull(name_or_id: str, *, home: Path, hub_url: str, token: str | None = None, timeout_s: float = 30.0,
         force: bool = False, progress: Progress | None = None) -> PulledCheckpoint:
    """Downloads a checkpoint into `<home>/checkpoints/<name>`; offline, a clear error saying how to copy one in."""
    import httpx

    name, repo = resolve(name_or_id)
    target = hub_dir(home) / name
    if pulled_path(home, name) is not None and not force:
        raise InvalidInput(f"{name} is already pulled into {target}; pass --force to download it again", field="name")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    base = hub_url.rstrip("/")
    started = time.perf_counter()
    partial = target.with_name(f".{name}.partial")
    try:
        with httpx.Client(timeout=timeout_s, follow_redirects=True, headers=headers) as client:
            listing = client.get(f"{base}/api/models/{repo}", params={"blobs": "true"})
            if listing.status_code in (401, 403, 404):
                raise ModelUnavailable(f"{repo} is not on {base} (or it needs a token: VITRINE_HUB_TOKEN)")
            listing.raise_for_status()
            info = listing.json()
            commit = str(info.get("sha") or "main")
            files = wanted_files(list(info.get("siblings") or []))
            if not any(f in ("config.json", open_clip_siglip.CONFIG) for f, _ in files):
                raise ModelUnavailable(f"{repo} holds no model config (config.json or {open_clip_siglip.CONFIG})")
            shutil.rmtree(partial, ignore_errors=True)
            done = _download(client, f"{base}/{repo}/resolve/{commit}", files, partial, progress)
            # An open_clip text tower may name its tokenizer's repository instead of holding its files.
            tokenizer = open_clip_siglip.tokenizer_repo(partial) if (partial / open_clip_siglip.CONFIG).is_file() \
                else None
            if tokenizer and not open_clip_siglip.has_tokenizer(partial):
                if not REPO_ID.match(tokenizer):
                    raise ModelUnavailable(f"{repo} names a tokenizer that is not a Hub id: {tokenizer!r}")
                listing = client.get(f"{base}/api/models/{tokenizer}")
                listing.raise_for_status()
                extra = [(f, n) for f, n in wanted_files(list(listing.json().get("siblings") or []))
                         if f in open_clip_siglip.TOKENIZER_FILES]
                done += _download(client, f"{base}/{tokenizer}/resolve/{listing.json().get('sha') or 'main'}", extra,
                                  partial, progress)
                files += extra
        if uses_open_clip(partial):
            open_clip_siglip.converted_path(partial)  # a variant it cannot read fails the pull, not a later ingest
    except ModelUnavailable:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    except httpx.HTTPError as exc:
        shutil.rmtree(partial, ignore_errors=True)
        raise ModelUnavailable(offline_message(repo, name, home, base, exc)) from exc
    except ValueError as exc:  # not JSON: not a hub
        shutil.rmtree(partial, ignore_errors=True)
        raise ModelUnavailable(f"{base} did not answer like the Hugging Face Hub: {exc}") from exc
    source = {"repo": repo, "commit": commit, "hub": base, "files": len(files), "bytes": done,
              "pulled_at": time.time(), "seconds": round(time.perf_counter() - started, 1)}
    (partial / SOURCE_FILE).write_text(json.dumps(source, indent=2))
    old = target.with_name(f".{name}.old")
    if target.exists():
        shutil.rmtree(old, ignore_errors=True)
        target.rename(old)
    partial.rename(target)
    shutil.rmtree(old, ignore_errors=True)
    return PulledCheckpoint(name=name, repo=repo, path=target, commit=commit, files=len(files), bytes=done)


def _download(client: Any, url: str, files: list[tuple[str, int]], folder: Path, progress: Progress | None) -> int:
    """Streams each file under `url` into `folder`; the bytes written."""
    total, done = sum(n for _, n in files), 0
    for file, _ in files:
        destination = folder / file
        destination.parent.mkdir(parents=True, exist_ok=True)
        with client.stream("GET", f"{url}/{file}") as response:
            response.raise_for_status()
            with destination.open("wb") as out:
                for chunk in response.iter_bytes(1 << 20):
                    out.write(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(done, total)
    return done


def offline_message(repo: str, name: str, home: Path, hub_url: str, exc: Exception) -> str:
    return (f"cannot download {repo} from {hub_url} ({type(exc).__name__}: {exc}). Without internet, copy the "
            f"checkpoint in: on a machine that has it, run `huggingface-cli download {repo} --local-dir {name}`, "
            f"copy the folder {name} to {hub_dir(home) / name}, then create a collection with `--encoder {name}` "
            "(or pass --encoder clip:<folder> for a checkpoint anywhere on disk)")
