"""Writers of checkpoint files shaped like the real SFM and SeisLM releases, for the model tests.

Key names and shapes come from REFERENCE.md and from stock timm / transformers modules, not from
seisbind's own towers, so a test that loads them checks seisbind against the published layouts.
"""

from __future__ import annotations

import argparse
import sys
import types
from collections import OrderedDict
from contextlib import contextmanager

import numpy as np
import torch

ML_COLLECTIONS_MODULES = ("ml_collections", "ml_collections.config_dict", "ml_collections.config_dict.config_dict")


def sfm_encoder_shapes(width: int, depth: int, img_size: int = 224, patch: int = 16, in_chans: int = 1) -> dict:
    """SFM (MAE ViT) encoder keys and shapes, written out from the published layout."""
    n = (img_size // patch) ** 2
    shapes = {
        "cls_token": (1, 1, width),
        "pos_embed": (1, n + 1, width),
        "patch_embed.proj.weight": (width, in_chans, patch, patch),
        "patch_embed.proj.bias": (width,),
        "norm.weight": (width,),
        "norm.bias": (width,),
    }
    for i in range(depth):
        b = f"blocks.{i}."
        shapes.update({
            b + "norm1.weight": (width,), b + "norm1.bias": (width,),
            b + "attn.qkv.weight": (3 * width, width), b + "attn.qkv.bias": (3 * width,),
            b + "attn.proj.weight": (width, width), b + "attn.proj.bias": (width,),
            b + "norm2.weight": (width,), b + "norm2.bias": (width,),
            b + "mlp.fc1.weight": (4 * width, width), b + "mlp.fc1.bias": (4 * width,),
            b + "mlp.fc2.weight": (width, 4 * width), b + "mlp.fc2.bias": (width,),
        })
    return shapes


def sfm_decoder_shapes(width: int, dec_width: int = 32, img_size: int = 224, patch: int = 16) -> dict:
    """MAE decoder keys (all dropped on import), one decoder block."""
    n = (img_size // patch) ** 2
    shapes = {
        "mask_token": (1, 1, dec_width),
        "decoder_pos_embed": (1, n + 1, dec_width),
        "decoder_embed.weight": (dec_width, width), "decoder_embed.bias": (dec_width,),
        "decoder_norm.weight": (dec_width,), "decoder_norm.bias": (dec_width,),
        "decoder_pred.weight": (patch * patch, dec_width), "decoder_pred.bias": (patch * patch,),
    }
    for k, v in sfm_encoder_shapes(dec_width, 1, img_size, patch).items():
        if k.startswith("blocks.0."):
            shapes["decoder_blocks." + k[len("blocks."):]] = v
    return shapes


def write_sfm_checkpoint(path, width=64, depth=2, img_size=224, in_chans=1, seed=0, edit=None):
    """Write an SFM-style MAE checkpoint; returns its ``model`` dict. ``edit(weights)`` may alter it."""
    g = torch.Generator().manual_seed(seed)
    shapes = {**sfm_encoder_shapes(width, depth, img_size, in_chans=in_chans),
              **sfm_decoder_shapes(width, img_size=img_size)}
    weights = OrderedDict((k, torch.randn(s, generator=g) * 0.02) for k, s in shapes.items())
    if edit is not None:
        edit(weights)
    args = argparse.Namespace(model="mae_vit_base_patch16", input_size=img_size, mask_ratio=0.75,
                              norm_pix_loss=True, epochs=1600, blr=1.5e-4)
    torch.save({
        "model": weights,
        "optimizer": {"state": {}, "param_groups": [{"lr": 1.5e-4, "weight_decay": 0.05, "params": [0, 1]}]},
        "epoch": 1599,
        "scaler": {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2000,
                   "_growth_tracker": 17},
        "args": args,
    }, path)
    return weights


@contextmanager
def fake_ml_collections():
    """Install a stand-in ``ml_collections.config_dict.config_dict`` module with a ``ConfigDict``
    that pickles as the real one does (its ``__dict__`` holds ``_fields``, ``_locked``,
    ``_type_safe``, ``_convert_dict``); the modules are removed again on exit."""
    assert not any(m in sys.modules for m in ML_COLLECTIONS_MODULES), "a real ml_collections is imported"
    mods = {name: types.ModuleType(name) for name in ML_COLLECTIONS_MODULES}

    class ConfigDict:
        def __init__(self, fields):
            object.__setattr__(self, "_fields", {
                k: ConfigDict(v) if isinstance(v, dict) else v for k, v in fields.items()
            })
            object.__setattr__(self, "_locked", False)
            object.__setattr__(self, "_type_safe", True)
            object.__setattr__(self, "_convert_dict", True)

        def __setstate__(self, state):  # the real one rebuilds itself; it must never run on load
            raise AssertionError("ConfigDict.__setstate__ ran: the checkpoint pickle was trusted")

    ConfigDict.__module__ = ML_COLLECTIONS_MODULES[-1]
    ConfigDict.__qualname__ = ConfigDict.__name__ = "ConfigDict"
    mods[ML_COLLECTIONS_MODULES[-1]].ConfigDict = ConfigDict
    sys.modules.update(mods)
    try:
        yield ConfigDict
    finally:
        for name in ML_COLLECTIONS_MODULES:
            sys.modules.pop(name, None)


def seislm_hf_config(hidden=32, layers=2, heads=2, intermediate=64, conv=32, pos_kernel=16, pos_groups=4,
                     mask_time_prob=0.65):
    """A transformers Wav2Vec2Config in SeisLM's layout (two stride-2 kernel-3 convs, stable layer norm)."""
    from transformers import Wav2Vec2Config

    return Wav2Vec2Config(
        hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads, intermediate_size=intermediate,
        conv_dim=[conv, conv], conv_kernel=[3, 3], conv_stride=[2, 2], num_feat_extract_layers=2, conv_bias=True,
        feat_extract_norm="layer", do_stable_layer_norm=True, num_conv_pos_embeddings=pos_kernel,
        num_conv_pos_embedding_groups=pos_groups, layer_norm_eps=1e-5, mask_time_prob=mask_time_prob,
        hidden_dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, feat_proj_dropout=0.0, layerdrop=0.0,
    )


def seislm_encoder_weights(hf_config, in_chans=3, seed=0, weight_norm="parametrizations"):
    """Encoder weights with SeisLM's names: a stock HF ``Wav2Vec2Model`` state dict whose first conv
    takes ``in_chans`` channels, weight norm spelled ``parametrizations`` (original0/1) or ``legacy``
    (weight_g/weight_v). Returns (weights, the stock model they came from)."""
    from transformers import Wav2Vec2Model

    torch.manual_seed(seed)
    stock = Wav2Vec2Model(hf_config).eval()
    weights = OrderedDict((k, v.detach().clone()) for k, v in stock.state_dict().items())
    key = "feature_extractor.conv_layers.0.conv.weight"
    out, _, k = weights[key].shape
    weights[key] = torch.randn(out, in_chans, k) * 0.3
    if weight_norm == "legacy":
        renames = (("parametrizations.weight.original0", "weight_g"), ("parametrizations.weight.original1", "weight_v"))
        for new, old in renames:
            for name in [n for n in weights if n.endswith(new)]:
                weights[name[: -len(new)] + old] = weights.pop(name)
    return weights, stock


def write_seislm_checkpoint(path, encoder_weights, hf_config, in_chans=3, extra=None):
    """Write a SeisLM-style Lightning checkpoint holding ``encoder_weights`` under ``model.wav2vec2.``,
    the pretraining-only quantizer and projections, and an ml_collections ConfigDict of
    hyper-parameters; the fake ml_collections module is gone again when this returns."""
    h, conv = hf_config.hidden_size, hf_config.conv_dim[-1]
    groups, per_group, code, proj = 2, 8, 16, 16
    state = OrderedDict(("model.wav2vec2." + k, v) for k, v in encoder_weights.items())
    state["model.quantizer.codevectors"] = torch.randn(1, groups * per_group, code // groups)
    state["model.quantizer.weight_proj.weight"] = torch.randn(groups * per_group, conv)
    state["model.quantizer.weight_proj.bias"] = torch.randn(groups * per_group)
    state["model.project_hid.weight"] = torch.randn(proj, h)
    state["model.project_hid.bias"] = torch.randn(proj)
    state["model.project_q.weight"] = torch.randn(proj, code)
    state["model.project_q.bias"] = torch.randn(proj)
    with fake_ml_collections() as ConfigDict:
        config = ConfigDict({
            "model_config": {"hidden_size": h, "num_hidden_layers": hf_config.num_hidden_layers,
                             "input_dim": in_chans, "conv_dim": list(hf_config.conv_dim), "mask_time_prob": 0.65},
            "training_config": {"learning_rate": 5e-4, "max_epochs": 40},
            "data_config": {"data_name": ["ETHZ", "GEOFON", "STEAD"], "demean": True, "amp_norm_type": "std"},
        })
        ckpt = {
            "epoch": 39,
            "global_step": 120000,
            "pytorch-lightning_version": "2.2.1",
            "state_dict": state,
            "loops": {"fit_loop": {"state_dict": {}, "epoch_progress": {"total": {"ready": 40}}}},
            "callbacks": {"ModelCheckpoint{'monitor': 'val/loss'}": {"best_model_score": torch.tensor(0.5),
                                                                     "dirpath": "/ckpt"}},
            "optimizer_states": [{"state": {}, "param_groups": [{"lr": 5e-4, "params": [0]}]}],
            # LambdaLR with a numpy-valued schedule stores numpy scalars, as SeisLM's does
            "lr_schedulers": [{"base_lrs": [5e-4], "_last_lr": [np.float64(4.2e-4)], "last_epoch": 1000}],
            "hparams_name": "kwargs",
            "hyper_parameters": {"config": config},
        }
        if extra:
            ckpt.update(extra)
        torch.save(ckpt, path)
    return ckpt
