"""The text tower: open_clip's text transformer and tokenizer, offline.

The trunk *is* ``open_clip.transformer.TextTransformer`` (causal attention, pooled at the
end-of-text token), built with the config's sizes and, by default, without its projection: the
seisbind head projects into the shared space, as for the other modalities. Its parameter names are
open_clip's CLIP text keys (``token_embedding.weight``, ``positional_embedding``,
``transformer.resblocks.N.*``, ``ln_final.*``), so :func:`load_text_checkpoint` loads a local
CLIP/open_clip checkpoint by name, with no key mapping beyond dropping the image tower.

The tokenizer is open_clip's ``SimpleTokenizer``, whose BPE vocabulary
(``bpe_simple_vocab_16e6.txt.gz``, 49,408 tokens) ships inside the open_clip wheel; or a Hugging
Face tokenizer saved in a local folder (``AutoTokenizer.from_pretrained(path,
local_files_only=True)``). Either way the token rows follow open_clip's convention: start token,
text tokens, end token, padding; an over-long text keeps the end token last. Nothing is downloaded.

Where the trunk pools: ``pool_type="argmax"`` (CLIP's): at the highest token id of each row, which
with open_clip's vocabulary is the end-of-text token (49407). A Hugging Face vocabulary's end token
is seldom its highest id, so a tokenizer folder needs ``pool_type="eos"`` with ``eos_id`` its end
token (open_clip's ``CLIPTextCfg`` names); :class:`TextTokenizer` says which id when they disagree.
Tokens after the end token never reach the pooled feature (causal mask).

Not here: a Hugging Face text *model* as trunk (``arch="hf"``); the config refuses it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from open_clip.transformer import LayerNorm, QuickGELU, TextTransformer
from torch import nn

from seisbind.models.checkpoints import LoadReport, check_state_keys, check_state_shapes, load_strict, safe_torch_load

# The config and its constants live with the other tower configs (seisbind.models.config).
from seisbind.models.config import (  # noqa: F401 - the SOT id and vocabulary size are re-exported
    OPEN_CLIP_EOT_ID,
    OPEN_CLIP_SOT_ID,
    OPEN_CLIP_VOCAB_SIZE,
    TextTowerConfig,
)


# ---------------------------------------------------------------- tokenizer


class TextTokenizer:
    """Strings -> token rows (batch, context_length) in open_clip's convention, offline.

    Each row is [start] + text tokens + [end], zero-padded (a Hugging Face tokenizer's own pad id,
    if it has one); a longer text is cut to ``context_length`` with the end token put back last, as
    open_clip's tokenizer does. With ``tokenizer="open_clip"`` the rows are exactly
    ``open_clip.tokenizer.SimpleTokenizer``'s (lower-cased, ftfy- and whitespace-cleaned).
    """

    def __init__(self, config: TextTowerConfig) -> None:
        self.config = config
        self.context_length = config.context_length
        if config.tokenizer == "open_clip":
            from open_clip.tokenizer import SimpleTokenizer

            self._tok = SimpleTokenizer(context_length=config.context_length)
            self._hf = False
            self.sot_id, self.eot_id, self.pad_id = self._tok.sot_token_id, self._tok.eot_token_id, 0
            vocab = self._tok.vocab_size
        else:
            self._tok = _load_hf_tokenizer(config.tokenizer)
            self._hf = True
            tok = self._tok
            self.sot_id = tok.bos_token_id if tok.bos_token_id is not None else tok.cls_token_id
            self.eot_id = tok.eos_token_id if tok.eos_token_id is not None else tok.sep_token_id
            if self.eot_id is None:
                raise ValueError(f"text tokenizer {config.tokenizer}: it has no end token (eos_token or sep_token); "
                                 f"the trunk pools there")
            self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
            vocab = len(tok)
        if vocab > config.vocab_size:
            raise ValueError(f"text tokenizer {config.tokenizer}: {vocab} tokens do not fit vocab_size "
                             f"{config.vocab_size}; set text vocab_size to at least {vocab}")
        argmax_ok = self.eot_id == vocab - 1 and self.sot_id != self.eot_id
        if config.pool_type == "argmax" and not argmax_ok:
            raise ValueError(f"text tokenizer {config.tokenizer}: its end token {self.eot_id} is not its highest id, "
                             f"so argmax pooling would miss it; set pool_type='eos' and eos_id={self.eot_id}")
        if config.pool_type == "eos" and config.eos_id != self.eot_id:
            raise ValueError(f"text tokenizer {config.tokenizer}: its end token is {self.eot_id}, "
                             f"but the config pools at eos_id={config.eos_id}; set eos_id={self.eot_id}")

    def __call__(self, texts: str | Sequence[str]) -> torch.LongTensor:
        texts = _as_texts(texts)
        if not self._hf:
            return self._tok(texts, context_length=self.context_length)  # open_clip's own rows
        from open_clip.tokenizer import whitespace_clean

        ids = self._tok([whitespace_clean(t) for t in texts], add_special_tokens=False)["input_ids"]
        out = torch.full((len(texts), self.context_length), self.pad_id, dtype=torch.long)
        for i, row in enumerate(ids):
            row = ([self.sot_id] if self.sot_id is not None else []) + list(row) + [self.eot_id]
            if len(row) > self.context_length:  # open_clip's truncation: cut, then the end token last
                row = row[: self.context_length]
                row[-1] = self.eot_id
            out[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        return out

    def decode(self, tokens: torch.Tensor) -> list[str]:
        """Token rows (batch, length) or one row (length,) -> the texts, without start, end and padding."""
        rows = tokens[None] if tokens.ndim == 1 else tokens
        out = []
        for row in rows.tolist():
            if row and row[0] == self.sot_id:
                row = row[1:]
            row = row[: row.index(self.eot_id)] if self.eot_id in row else row
            if self._hf:
                out.append(self._tok.decode(row, skip_special_tokens=True).strip())
            else:
                out.append(" ".join(self._tok.decode(row).split()))
        return out


def _as_texts(texts) -> list[str]:
    if isinstance(texts, str):
        return [texts]
    if not isinstance(texts, Sequence) or not all(isinstance(t, str) for t in texts):
        raise ValueError(f"texts must be a string or a list of strings; got {type(texts).__name__}")
    if not texts:
        raise ValueError("texts: the batch is empty")
    return list(texts)


def _load_hf_tokenizer(path: str):
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise ValueError(f"text tokenizer must be 'open_clip' or a local Hugging Face tokenizer folder; "
                         f"{path!r} is neither (nothing is downloaded)")
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except Exception as err:  # transformers' errors span several lines; keep the first
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"could not load the Hugging Face tokenizer in {folder}: {first}") from err


# ---------------------------------------------------------------- preprocessor


def validate_tokens(tokens: torch.Tensor, config: TextTowerConfig) -> torch.Tensor:
    """Check token rows (batch, length <= context_length); return them as int64, zero-padded to
    ``context_length`` (padding after the end token does not change the pooled feature)."""
    if not isinstance(tokens, torch.Tensor):
        raise ValueError(f"tokens must be a torch.Tensor; got {type(tokens).__name__}")
    if tokens.dtype == torch.bool or tokens.is_floating_point() or tokens.is_complex():
        raise ValueError(f"tokens must be integer token ids; got dtype {tokens.dtype}")
    if tokens.ndim != 2:
        hint = " (for one text use tokens[None])" if tokens.ndim == 1 else ""
        raise ValueError(f"tokens must have 2 dimensions (batch, length); got shape {tuple(tokens.shape)}{hint}")
    batch, length = tokens.shape
    if batch == 0:
        raise ValueError("tokens: the batch is empty")
    if length > config.context_length:
        raise ValueError(f"tokens must be at most context_length {config.context_length} long; got {length}")
    tokens = tokens.long()
    if bool(((tokens < 0) | (tokens >= config.vocab_size)).any()):
        raise ValueError(f"tokens must be ids in [0, {config.vocab_size}); got values in "
                         f"[{int(tokens.min())}, {int(tokens.max())}]")
    end = config.eos_id if config.pool_type == "eos" else OPEN_CLIP_EOT_ID if config.tokenizer == "open_clip" else None
    if end is not None:
        lacking = (~(tokens == end).any(dim=1)).nonzero().flatten().tolist()
        if lacking:
            raise ValueError(f"every token row needs the end-of-text token {end} (the trunk pools there); "
                             f"rows {lacking[:8]} have none")
    if length < config.context_length:
        tokens = nn.functional.pad(tokens, (0, config.context_length - length))
    return tokens


class TextPreprocessor(nn.Module):
    """Strings (or ready token rows) -> ``{"trunk": {"tokens": (batch, context_length)}, "head": {}}``.

    The tokenizer is loaded on first use, so a model that never sees text does not load it.
    """

    def __init__(self, config: TextTowerConfig) -> None:
        super().__init__()
        self.config = config
        self._tokenizer: TextTokenizer | None = None

    @property
    def tokenizer(self) -> TextTokenizer:
        if self._tokenizer is None:
            self._tokenizer = TextTokenizer(self.config)
        return self._tokenizer

    def forward(self, texts: str | Sequence[str] | torch.Tensor) -> dict[str, dict[str, torch.Tensor]]:
        if isinstance(texts, torch.Tensor):
            tokens = validate_tokens(texts, self.config)
        else:
            tokens = self.tokenizer(texts)
        return {"trunk": {"tokens": tokens}, "head": {}}


# ---------------------------------------------------------------- trunk


class TextTrunk(TextTransformer):
    """open_clip's ``TextTransformer``: token rows (batch, context_length) -> pooled features (batch, width).

    Causal attention, final LayerNorm, pooled at the end token (``pool_type``), then
    ``text_projection`` only when ``output_dim`` is set. ``width`` is the width of what it returns.
    """

    def __init__(self, config: TextTowerConfig) -> None:
        super().__init__(
            context_length=config.context_length,
            vocab_size=config.vocab_size,
            width=config.width,
            heads=config.heads,
            layers=config.layers,
            mlp_ratio=config.mlp_ratio,
            output_dim=config.output_dim,
            pool_type=config.pool_type,
            eos_id=config.eos_id if config.eos_id is not None else OPEN_CLIP_EOT_ID,
            act_layer=QuickGELU if config.quick_gelu else nn.GELU,
            norm_layer=LayerNorm,
        )
        self.tower_config = config
        # TextTransformer's own ``width`` is the token width; here it is what the head receives.
        self.width = config.pooled_width

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token ids (batch, context_length) -> (batch, width)."""
        return super().forward(tokens.to(self.token_embedding.weight.device))

    def trainable_tail(self, blocks: int) -> list[nn.Module]:
        """The last ``blocks`` residual blocks and the final norm: what a partly locked trunk trains.
        (A ``text_projection``, when ``output_dim`` is set, is a bare parameter and stays locked.)"""
        resblocks = self.transformer.resblocks
        if not 0 <= blocks <= len(resblocks):
            raise ValueError(f"unlocked_blocks for the text trunk must be in [0, {len(resblocks)}]; got {blocks}")
        return [*resblocks[len(resblocks) - blocks:], self.ln_final] if blocks else []

    def load_text_checkpoint(self, path: str | os.PathLike) -> LoadReport:
        """Load a local CLIP/open_clip checkpoint's text tower; see :func:`load_text_checkpoint`."""
        return load_text_checkpoint(self, path)


# ---------------------------------------------------------------- checkpoint import

_TEXT_KEYS = ("token_embedding.", "positional_embedding", "transformer.", "ln_final.", "text_projection", "attn_mask")
_WRAPPERS = ("state_dict", "model")  # open_clip's training checkpoints: {"epoch", "state_dict", "optimizer", ...}


def _read_weights(path: str) -> dict[str, torch.Tensor]:
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        try:
            obj: Any = load_file(path)
        except Exception as err:
            raise ValueError(f"could not read safetensors file {path}: {err}") from err
    else:
        obj = safe_torch_load(path)  # weights_only=True: refuses any pickled class but known-inert ones
    for key in _WRAPPERS:
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not obj:
        raise ValueError(f"text checkpoint {path}: expected a state dict (names to tensors); got {type(obj).__name__}")
    weights = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if weights and all(k.startswith("module.") for k in weights):  # saved from DistributedDataParallel
        weights = {k[len("module."):]: v for k, v in weights.items()}
    return weights


def load_text_checkpoint(trunk: TextTrunk, path: str | os.PathLike) -> LoadReport:
    """Initialise a text trunk from a local CLIP/open_clip checkpoint file.

    ``.safetensors`` files are read with safetensors; any other file with
    ``torch.load(weights_only=True)`` (:func:`~seisbind.models.checkpoints.safe_torch_load`), which
    never unpickles arbitrary objects. The weights may sit at the top level or under
    ``state_dict``/``model`` (open_clip's training checkpoints), with DDP's ``module.`` prefix or not.
    Layouts: open_clip's ``CLIP`` (text keys at the top level beside ``visual.*``) and
    ``CustomTextCLIP`` (under ``text.``). The image tower, ``logit_scale``/``logit_bias``, the
    ``attn_mask`` buffer (rebuilt from ``context_length``) and, for a trunk without ``output_dim``,
    ``text_projection`` are dropped and listed in the report. Missing, unexpected or wrongly shaped
    keys raise a one-line ``ValueError`` naming them (the config's sizes must be the checkpoint's).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"text checkpoint file not found: {path}")
    weights = _read_weights(path)
    prefix = "text." if "text.token_embedding.weight" in weights else ""
    report = LoadReport(path=path)
    model_sd = trunk.state_dict()
    ckpt: dict[str, torch.Tensor] = {}
    for key, value in weights.items():
        name = key[len(prefix):] if key.startswith(prefix) else None
        keep = name is not None and name.startswith(_TEXT_KEYS) and name != "attn_mask"
        if keep and name.startswith("text_projection") and trunk.text_projection is None:
            keep = False
        if keep:
            ckpt[name] = value
        else:
            report.dropped.append(key)
    check_state_keys(model_sd, ckpt, "text trunk", path, hint=" (its layers, output_dim?)")
    check_state_shapes(model_sd, ckpt, "text trunk", path, hint="; set context_length, vocab_size and width to the checkpoint's")
    load_strict(trunk, ckpt, report)
    report.dropped.sort()
    return report
