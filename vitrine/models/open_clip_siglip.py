"""open_clip SigLIP checkpoints (Marqo-FashionSigLIP) read through transformers' SigLIP.

open_clip needs torchvision, which does not run beside this torch. But an open_clip SigLIP is a timm ViT
with attention pooling plus a bidirectional text transformer read at its last position, which is what
transformers' `SiglipModel` is. So its weights are renamed once (the fused attention projections split
into query, key and value) into a Hugging Face folder inside the checkpoint, and from then on the
checkpoint loads like any SigLIP. The conversion is strict: every weight must find its place and every
place a weight, so a variant this mapping does not know fails with a message instead of loading with
random layers.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import string
import threading
from html import unescape
from pathlib import Path
from typing import Any

from vitrine.errors import ModelUnavailable

CONFIG = "open_clip_config.json"
CONVERTED = "vitrine-hf"
# open_clip's own files first; a repository that wraps the model for transformers' remote code stores the
# same weights under "model." in model.safetensors.
WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin", "model.safetensors", "pytorch_model.bin")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "spiece.model")
# Attention heads of timm's SigLIP towers by width (the weights do not say); others get 64-wide heads.
HEADS_BY_WIDTH = {768: 12, 1024: 16, 1152: 16}
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def read_config(path: Path) -> dict[str, Any]:
    try:
        config = json.loads((path / CONFIG).read_text())
    except (OSError, ValueError) as exc:
        raise ModelUnavailable(f"cannot read {path / CONFIG}: {exc}") from exc
    if not isinstance(config, dict):
        raise ModelUnavailable(f"{path / CONFIG} is not a JSON object")
    return config


def tokenizer_repo(path: Path) -> str | None:
    """The Hub repository the text tower's tokenizer comes from, when the checkpoint names one."""
    name = read_config(path).get("model_cfg", {}).get("text_cfg", {}).get("hf_tokenizer_name")
    return str(name) if name else None


def has_tokenizer(path: Path) -> bool:
    return (path / "tokenizer.json").is_file() or (path / "spiece.model").is_file()


def canonicalize(text: str) -> str:
    """open_clip's "canonicalize" cleaning that SigLIP was trained with: no punctuation, lower case."""
    text = unescape(unescape(text)).replace("_", " ").translate(_PUNCTUATION).lower()
    return " ".join(text.split())


def converted_path(path: Path) -> Path:
    """The Hugging Face folder of an open_clip checkpoint, converted on first use."""
    target = path / CONVERTED
    if _complete(target):
        return target
    partial = path / f".{CONVERTED}.{os.getpid()}.{threading.get_ident()}.partial"
    try:
        partial.mkdir()
        convert(path, partial)
        if not _complete(target):  # else another process converted it meanwhile
            shutil.rmtree(target, ignore_errors=True)
            partial.rename(target)
    except OSError as exc:
        if _complete(target):
            return target
        raise ModelUnavailable(f"cannot write the converted checkpoint into {path}: {exc}; copy the checkpoint "
                               "into a folder Vitrine can write to") from exc
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return target


def _complete(folder: Path) -> bool:
    return (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()


def convert(source: Path, target: Path) -> None:
    """Writes `source`'s open_clip SigLIP as a Hugging Face SigLIP folder: config, weights, preprocessing,
    tokenizer."""
    import torch
    from transformers import SiglipConfig, SiglipModel

    config = read_config(source)
    model_cfg = config.get("model_cfg", {})
    vision_cfg, text_cfg = model_cfg.get("vision_cfg", {}), model_cfg.get("text_cfg", {})
    timm_name = str(vision_cfg.get("timm_model_name", ""))
    if ("siglip" not in timm_name or vision_cfg.get("timm_pool") != "map" or not model_cfg.get("custom_text")
            or text_cfg.get("pool_type") != "last"):
        raise ModelUnavailable(f"{source} is an open_clip model Vitrine cannot read: only SigLIP ones (a timm "
                               "'*_siglip_*' ViT with attention pooling, such as Marqo-FashionSigLIP) are supported")
    if not has_tokenizer(source):
        repo = text_cfg.get("hf_tokenizer_name") or "the tokenizer its open_clip_config.json names"
        raise ModelUnavailable(f"{source} has no tokenizer (tokenizer.json or spiece.model): copy the files of "
                               f"{repo} into it, or pull the checkpoint with `vitrine models pull`")
    weights = _state_dict(source)
    text, vision = _text_config(weights, text_cfg), _vision_config(weights, vision_cfg)
    hf_config = SiglipConfig(text_config=text, vision_config=vision)
    model = SiglipModel(hf_config)
    mapped = map_weights(weights, vision_layers=vision["num_hidden_layers"], text_layers=text["num_hidden_layers"])
    expected = set(model.state_dict())
    missing, unused = sorted(expected - set(mapped)), sorted(set(mapped) - expected)
    if missing or unused:
        raise ModelUnavailable(f"{source}: the open_clip weights do not fit a SigLIP (missing {missing[:4]}, "
                               f"unexpected {unused[:4]})")
    with torch.no_grad():
        model.load_state_dict(mapped, strict=True)
    hf_config.vitrine_text_clean = text_cfg.get("tokenizer_kwargs", {}).get("clean", "")
    model.save_pretrained(str(target), max_shard_size="100GB")  # one model.safetensors
    preprocess = config.get("preprocess_cfg", {})
    size = int(vision_cfg.get("image_size", 224))
    (target / "preprocessor_config.json").write_text(json.dumps({
        "image_mean": list(preprocess.get("mean", (0.5, 0.5, 0.5))),
        "image_std": list(preprocess.get("std", (0.5, 0.5, 0.5))),
        "size": {"height": size, "width": size},
    }, indent=2))
    for name in TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copyfile(source / name, target / name)


def _state_dict(source: Path) -> dict[str, Any]:
    import torch

    for name in WEIGHT_FILES:
        file = source / name
        if not file.is_file():
            continue
        try:
            if name.endswith(".safetensors"):
                from safetensors.torch import load_file

                weights: Any = load_file(str(file))
            else:
                weights = torch.load(str(file), map_location="cpu", weights_only=True)
        except Exception as exc:  # a truncated or foreign file: torch and safetensors raise many kinds
            raise ModelUnavailable(f"cannot read {file}: {exc}") from exc
        if isinstance(weights, dict) and isinstance(weights.get("state_dict"), dict):
            weights = weights["state_dict"]
        weights = {k.removeprefix("module."): v for k, v in weights.items()}
        if weights and all(k.startswith("model.") for k in weights):
            weights = {k.removeprefix("model."): v for k, v in weights.items()}
        return dict(weights)
    raise ModelUnavailable(f"{source} holds no open_clip weights ({', '.join(WEIGHT_FILES)})")


def _layers(weights: dict[str, Any], pattern: str) -> int:
    found = {int(m.group(1)) for k in weights if (m := re.match(pattern, k))}
    return max(found) + 1 if found else 0


def _vision_config(weights: dict[str, Any], vision_cfg: dict[str, Any]) -> dict[str, Any]:
    patch = weights["visual.trunk.patch_embed.proj.weight"]
    width = int(patch.shape[0])
    return {
        "hidden_size": width, "patch_size": int(patch.shape[-1]), "image_size": int(vision_cfg.get("image_size", 224)),
        "intermediate_size": int(weights["visual.trunk.blocks.0.mlp.fc1.weight"].shape[0]),
        "num_hidden_layers": _layers(weights, r"visual\.trunk\.blocks\.(\d+)\."),
        "num_attention_heads": HEADS_BY_WIDTH.get(width, max(1, width // 64)),
        "hidden_act": "gelu", "layer_norm_eps": 1e-6,  # timm's ViT: exact GELU, LayerNorm eps 1e-6
    }


def _text_config(weights: dict[str, Any], text_cfg: dict[str, Any]) -> dict[str, Any]:
    vocab, width = (int(n) for n in weights["text.token_embedding.weight"].shape)
    return {
        "vocab_size": vocab, "hidden_size": width,
        "max_position_embeddings": int(weights["text.positional_embedding"].shape[0]),
        "intermediate_size": int(weights["text.transformer.resblocks.0.mlp.c_fc.weight"].shape[0]),
        "num_hidden_layers": _layers(weights, r"text\.transformer\.resblocks\.(\d+)\."),
        "num_attention_heads": int(text_cfg.get("heads") or max(1, width // 64)),
        "projection_size": int(weights["text.text_projection.weight"].shape[0]),
        "layer_norm_eps": float(text_cfg.get("norm_kwargs", {}).get("eps", 1e-5)),
        "hidden_act": "gelu",  # open_clip's text blocks use nn.GELU
        "pad_token_id": None, "bos_token_id": None, "eos_token_id": None,
    }


def map_weights(weights: dict[str, Any], *, vision_layers: int, text_layers: int) -> dict[str, Any]:
    """open_clip (timm ViT + TextTransformer) names to transformers' SiglipModel names. Raises when a
    source weight goes nowhere (a variant with layer scale, q/k norms, a class token...)."""
    import torch

    out: dict[str, Any] = {}
    used: set[str] = set()

    def take(key: str) -> Any:
        used.add(key)
        return weights[key]

    def copy(source: str, target: str) -> None:
        for suffix in ("weight", "bias"):
            if f"{source}.{suffix}" in weights:
                out[f"{target}.{suffix}"] = take(f"{source}.{suffix}")

    def split(fused: str, target: str, suffix: str) -> None:
        for name, part in zip(("q_proj", "k_proj", "v_proj"), take(fused).chunk(3, dim=0), strict=True):
            out[f"{target}.{name}.{suffix}"] = part.contiguous()

    v, vt = "visual.trunk", "vision_model"
    copy(f"{v}.patch_embed.proj", f"{vt}.embeddings.patch_embedding")
    position = take(f"{v}.pos_embed")
    out[f"{vt}.embeddings.position_embedding.weight"] = position.reshape(-1, position.shape[-1])
    for i in range(vision_layers):
        block, layer = f"{v}.blocks.{i}", f"{vt}.encoder.layers.{i}"
        copy(f"{block}.norm1", f"{layer}.layer_norm1")
        copy(f"{block}.norm2", f"{layer}.layer_norm2")
        for suffix in ("weight", "bias"):
            split(f"{block}.attn.qkv.{suffix}", f"{layer}.self_attn", suffix)
        copy(f"{block}.attn.proj", f"{layer}.self_attn.out_proj")
        copy(f"{block}.mlp.fc1", f"{layer}.mlp.fc1")
        copy(f"{block}.mlp.fc2", f"{layer}.mlp.fc2")
    copy(f"{v}.norm", f"{vt}.post_layernorm")
    pool, head = f"{v}.attn_pool", f"{vt}.head"
    out[f"{head}.probe"] = take(f"{pool}.latent")
    for suffix in ("weight", "bias"):  # timm's query and (key, value) projections are one in_proj here
        out[f"{head}.attention.in_proj_{suffix}"] = torch.cat([take(f"{pool}.q.{suffix}"),
                                                               take(f"{pool}.kv.{suffix}")], dim=0)
    copy(f"{pool}.proj", f"{head}.attention.out_proj")
    copy(f"{pool}.norm", f"{head}.layernorm")
    copy(f"{pool}.mlp.fc1", f"{head}.mlp.fc1")
    copy(f"{pool}.mlp.fc2", f"{head}.mlp.fc2")

    t, tt = "text", "text_model"
    out[f"{tt}.embeddings.token_embedding.weight"] = take(f"{t}.token_embedding.weight")
    out[f"{tt}.embeddings.position_embedding.weight"] = take(f"{t}.positional_embedding")
    for i in range(text_layers):
        block, layer = f"{t}.transformer.resblocks.{i}", f"{tt}.encoder.layers.{i}"
        copy(f"{block}.ln_1", f"{layer}.layer_norm1")
        copy(f"{block}.ln_2", f"{layer}.layer_norm2")
        split(f"{block}.attn.in_proj_weight", f"{layer}.self_attn", "weight")
        split(f"{block}.attn.in_proj_bias", f"{layer}.self_attn", "bias")
        copy(f"{block}.attn.out_proj", f"{layer}.self_attn.out_proj")
        copy(f"{block}.mlp.c_fc", f"{layer}.mlp.fc1")
        copy(f"{block}.mlp.c_proj", f"{layer}.mlp.fc2")
    copy(f"{t}.ln_final", f"{tt}.final_layer_norm")
    copy(f"{t}.text_projection", f"{tt}.head")
    out["logit_scale"] = take("logit_scale").reshape(1)
    out["logit_bias"] = take("logit_bias").reshape(1)
    unused = sorted(set(weights) - used)
    if unused:
        raise ModelUnavailable(f"open_clip weights this conversion does not know: {unused[:4]}")
    return out
