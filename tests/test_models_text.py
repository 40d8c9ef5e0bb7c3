"""The text tower: offline tokenizers, EOT pooling, open_clip checkpoint import and the config."""

from __future__ import annotations

import json
import socket

import numpy as np
import pytest
import torch

from seisbind.models.text_tower import (
    OPEN_CLIP_EOT_ID,
    OPEN_CLIP_SOT_ID,
    OPEN_CLIP_VOCAB_SIZE,
    TextPreprocessor,
    TextTokenizer,
    TextTowerConfig,
    TextTrunk,
    load_text_checkpoint,
)

SMALL = {"width": 32, "layers": 2, "heads": 2}  # small enough to build in milliseconds


@pytest.fixture
def offline(monkeypatch):
    """No network: any connection attempt fails the test, and the HF hub is told it is offline."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args[1:]}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="module")
def tokenizer():
    return TextTokenizer(TextTowerConfig())


def _trunk(seed=0, **kw):
    torch.manual_seed(seed)
    return TextTrunk(TextTowerConfig(**{**SMALL, **kw})).eval()


# ---------------------------------------------------------------- tokenizers


def test_open_clip_tokenizer_runs_offline_and_round_trips(offline):
    tok = TextTokenizer(TextTowerConfig())
    text = "A Reverse Fault with large throw under soft soil"
    tokens = tok(text)
    assert tokens.dtype == torch.long and tuple(tokens.shape) == (1, 32)
    n = len(text.split()) + 2  # every word here is one BPE token
    assert tokens[0, 0] == OPEN_CLIP_SOT_ID and tokens[0, n - 1] == OPEN_CLIP_EOT_ID
    assert (tokens[0, n:] == 0).all()
    assert tok.decode(tokens) == [text.lower()]
    two = tok(["flat layers", "folded layers"])
    assert tuple(two.shape) == (2, 32) and tok.decode(two) == ["flat layers", "folded layers"]
    # the ids are open_clip's own
    from open_clip.tokenizer import SimpleTokenizer

    ref = SimpleTokenizer()
    assert (ref.vocab_size, ref.sot_token_id, ref.eot_token_id) == (OPEN_CLIP_VOCAB_SIZE, OPEN_CLIP_SOT_ID,
                                                                    OPEN_CLIP_EOT_ID)
    assert torch.equal(tokens, ref(text, context_length=32))


def test_overlong_text_is_truncated_with_eot_last(tokenizer):
    text = " ".join(["layers"] * 50)
    tokens = tokenizer(text)
    assert tuple(tokens.shape) == (1, 32)
    assert tokens[0, -1] == OPEN_CLIP_EOT_ID and (tokens[0] != 0).all()
    assert (tokens[0] == OPEN_CLIP_EOT_ID).sum() == 1
    assert tokenizer.decode(tokens)[0] == " ".join(["layers"] * 30)


def _hf_folder(path):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["[PAD]", "[UNK]", "[BOS]", "[EOS]", "a", "reverse", "fault", "with", "large", "throw", "zz"]
    tk = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tk.normalizer = normalizers.Lowercase()
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="[PAD]", unk_token="[UNK]", bos_token="[BOS]",
                            eos_token="[EOS]").save_pretrained(path)
    return str(path)


def test_local_hugging_face_tokenizer_runs_offline(offline, tmp_path):
    folder = _hf_folder(tmp_path / "tok")
    cfg = TextTowerConfig(tokenizer=folder, vocab_size=11, context_length=6, pool_type="eos", eos_id=3)
    tok = TextTokenizer(cfg)
    tokens = tok(["A reverse fault", "a reverse fault with large throw"])
    assert tokens.tolist() == [[2, 4, 5, 6, 3, 0], [2, 4, 5, 6, 7, 3]]  # BOS ... EOS, pad; truncated: EOS last
    assert tok.decode(tokens) == ["a reverse fault", "a reverse fault with"]
    trunk = TextTrunk(cfg).eval()
    with torch.no_grad():
        assert tuple(trunk(tokens).shape) == (2, 128)  # the default width
    with pytest.raises(ValueError, match="eos_id=3"):  # argmax would pool at the highest id, not the end
        TextTokenizer(TextTowerConfig(tokenizer=folder, vocab_size=11))
    with pytest.raises(ValueError, match="set eos_id=3"):
        TextTokenizer(TextTowerConfig(tokenizer=folder, vocab_size=11, pool_type="eos", eos_id=2))
    with pytest.raises(ValueError, match="vocab_size to at least 11"):
        TextTokenizer(TextTowerConfig(tokenizer=folder, vocab_size=8, pool_type="eos", eos_id=3))
    with pytest.raises(ValueError, match="neither"):
        TextTokenizer(TextTowerConfig(tokenizer=str(tmp_path / "absent"), vocab_size=11, pool_type="eos", eos_id=3))


def test_every_family_caption_fits_the_default_context(tokenizer):
    from seisbind.data.captions import make_captions
    from seisbind.data.geology import FAMILIES, GeologyPrior, random_geology
    from seisbind.data.labels import geology_labels

    rng = np.random.default_rng(0)
    for family in FAMILIES:
        for _ in range(2):
            labels = geology_labels(random_geology(rng, GeologyPrior(), family))
            for templates in ("train", "heldout"):
                caps = make_captions(labels, 100, rng, templates)
                lengths = [len(tokenizer._tok.encode(c)) + 2 for c in caps]  # + SOT and EOT
                assert max(lengths) <= 32, (family, templates, caps[int(np.argmax(lengths))])


# ---------------------------------------------------------------- preprocessor and trunk


def test_preprocessor_returns_the_tower_layout_and_checks_tokens(tokenizer):
    pre = TextPreprocessor(TextTowerConfig())
    out = pre(["a faulted section", "flat layers"])
    assert set(out) == {"trunk", "head"} and out["head"] == {} and set(out["trunk"]) == {"tokens"}
    assert out["trunk"]["tokens"].dtype == torch.long and tuple(out["trunk"]["tokens"].shape) == (2, 32)
    short = tokenizer("flat layers")[:, :5]
    padded = pre(short.int())["trunk"]["tokens"]
    assert tuple(padded.shape) == (1, 32) and torch.equal(padded, tokenizer("flat layers"))
    bad = [(short.float(), "integer"), (short[0], r"tokens\[None\]"), (torch.zeros(1, 40, dtype=torch.long), "at most"),
           (short + OPEN_CLIP_VOCAB_SIZE, r"ids in \[0, 49408\)"), (torch.ones(2, 4, dtype=torch.long), "end-of-text"),
           (short[:0], "empty")]
    for tokens, match in bad:
        with pytest.raises(ValueError, match=match):
            pre(tokens)
    with pytest.raises(ValueError, match="list of strings"):
        pre([1, 2])


def test_trunk_output_shape_and_width(tokenizer):
    tokens = tokenizer(["a faulted section", "flat layers", "site class C"])
    trunk = _trunk()
    with torch.no_grad():
        assert tuple(trunk(tokens).shape) == (3, 32) and trunk.width == 32
    projected = _trunk(output_dim=16)
    with torch.no_grad():
        assert tuple(projected(tokens).shape) == (3, 16) and projected.width == 16
    assert len(trunk.trainable_tail(1)) == 2 and trunk.trainable_tail(0) == []
    with pytest.raises(ValueError, match="unlocked_blocks"):
        trunk.trainable_tail(3)


def test_tokens_after_the_end_token_do_not_change_the_output(tokenizer):
    trunk = _trunk()
    tokens = tokenizer(["a reverse fault with large throw", "flat layers"])
    end = tokens.argmax(dim=1)
    noisy = tokens.clone()
    g = torch.Generator().manual_seed(0)
    for i, e in enumerate(end.tolist()):
        noisy[i, e + 1:] = torch.randint(1, OPEN_CLIP_SOT_ID, (32 - e - 1,), generator=g)
    before = tokens.clone()
    before[:, 1] = 1000  # a change before the end token does change it
    with torch.no_grad():
        ref, out, changed = trunk(tokens), trunk(noisy), trunk(before)
    assert not torch.equal(noisy, tokens)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)
    assert (changed - ref).abs().amax(dim=1).min() > 1e-3


# ---------------------------------------------------------------- checkpoints


def _clip(custom=False, context_length=32, layers=2):
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg, CustomTextCLIP

    torch.manual_seed(1)
    vision = CLIPVisionCfg(layers=1, width=32, head_width=16, patch_size=16, image_size=32)
    text = CLIPTextCfg(context_length=context_length, vocab_size=OPEN_CLIP_VOCAB_SIZE, width=32, heads=2,
                       layers=layers)
    return (CustomTextCLIP if custom else CLIP)(embed_dim=16, vision_cfg=vision, text_cfg=text).eval()


def _open_clip_pooled(clip, tokens):
    """open_clip's own text features before the projection, from its own modules."""
    from open_clip.transformer import text_global_pool

    x = clip.token_embedding(tokens) + clip.positional_embedding
    x = clip.ln_final(clip.transformer(x, attn_mask=clip.attn_mask))
    return text_global_pool(x, tokens, clip.text_pool_type)


class NotAWeight:  # a pickled class in a checkpoint: must be refused, never constructed
    pass


def test_open_clip_checkpoint_round_trip(tmp_path, tokenizer):
    from safetensors.torch import save_file

    tokens = tokenizer(["a reverse fault with large throw", "site class C", "flat layers"])
    clip = _clip()
    sd = {k: v.contiguous() for k, v in clip.state_dict().items()}
    sd["attn_mask"] = clip.attn_mask.clone()  # some exports keep the buffer
    save_file(sd, tmp_path / "clip.safetensors")
    with torch.no_grad():
        pooled = _open_clip_pooled(clip, tokens)
        torch.testing.assert_close(pooled @ clip.text_projection, clip.encode_text(tokens))  # it is pre-projection

        trunk = _trunk(seed=5)
        report = load_text_checkpoint(trunk, tmp_path / "clip.safetensors")
        torch.testing.assert_close(trunk(tokens), pooled, rtol=0, atol=1e-6)
        assert "positional_embedding" in report.loaded and "transformer.resblocks.1.mlp.c_fc.weight" in report.loaded
        assert {"attn_mask", "text_projection", "logit_scale"} <= set(report.dropped)
        assert any(k.startswith("visual.") for k in report.dropped)
        assert not any(k.startswith("visual.") for k in report.loaded)

        projected = _trunk(seed=6, output_dim=16)
        assert "text_projection" in projected.load_text_checkpoint(tmp_path / "clip.safetensors").loaded
        torch.testing.assert_close(projected(tokens), clip.encode_text(tokens), rtol=0, atol=1e-6)

    # CustomTextCLIP layout (text.*), as open_clip's training checkpoint: a torch file, state_dict, DDP prefix
    custom = _clip(custom=True)
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in custom.state_dict().items()}},
               tmp_path / "epoch_3.pt")
    trunk = _trunk(seed=7, output_dim=16)
    report = load_text_checkpoint(trunk, tmp_path / "epoch_3.pt")
    assert "text.token_embedding.weight" not in report.dropped and "logit_scale" in report.dropped
    with torch.no_grad():
        torch.testing.assert_close(trunk(tokens), custom.encode_text(tokens), rtol=0, atol=1e-6)

    torch.save({"state_dict": custom.state_dict(), "args": NotAWeight()}, tmp_path / "pickled.pt")
    with pytest.raises(ValueError, match="NotAWeight"):
        load_text_checkpoint(_trunk(), tmp_path / "pickled.pt")


def test_a_checkpoint_of_other_sizes_is_refused_in_one_line(tmp_path):
    from safetensors.torch import save_file

    save_file(_clip(context_length=16).state_dict(), tmp_path / "ctx16.safetensors")
    trunk = _trunk()
    before = {k: v.clone() for k, v in trunk.state_dict().items()}
    with pytest.raises(ValueError, match=r"positional_embedding: model expects \(32, 32\), checkpoint has "
                                         r"\(16, 32\); set context_length") as err:
        load_text_checkpoint(trunk, tmp_path / "ctx16.safetensors")
    assert "\n" not in str(err.value)
    assert all(torch.equal(v, trunk.state_dict()[k]) for k, v in before.items())  # nothing half-loaded

    save_file(_clip(layers=1).state_dict(), tmp_path / "one_layer.safetensors")
    with pytest.raises(ValueError, match=r"missing \d+ key\(s\) the text trunk expects: transformer\.resblocks\.1\.") as err:
        load_text_checkpoint(trunk, tmp_path / "one_layer.safetensors")
    assert "\n" not in str(err.value)
    with pytest.raises(FileNotFoundError):
        load_text_checkpoint(trunk, tmp_path / "absent.safetensors")


# ---------------------------------------------------------------- config


def test_config_round_trips_and_refuses_unknown_keys_and_bad_types():
    default = TextTowerConfig()
    assert (default.arch, default.context_length, default.vocab_size, default.width, default.layers,
            default.heads, default.mlp_ratio, default.output_dim, default.tokenizer) == \
        ("open_clip", 32, 49408, 128, 2, 4, 4.0, None, "open_clip")
    cfg = TextTowerConfig(width=64, heads=8, output_dim=32, mlp_ratio=2, quick_gelu=True)
    assert TextTowerConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert isinstance(cfg.mlp_ratio, float)
    with pytest.raises(ValueError, match=r"unknown key\(s\) in text tower config: \['widht'\]") as err:
        TextTowerConfig.from_dict({"widht": 64})
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="JSON object"):
        TextTowerConfig.from_dict([("width", 64)])
    bad = [({"width": "128"}, "width must be a positive integer"), ({"layers": 2.0}, "layers"),
           ({"heads": True}, "heads"), ({"context_length": 1}, "at least 2"), ({"output_dim": 0}, "output_dim"),
           ({"mlp_ratio": float("nan")}, "mlp_ratio"), ({"tokenizer": 3}, "tokenizer"),
           ({"pool_type": "mean"}, "pool_type"), ({"pool_type": "eos"}, "needs eos_id"),
           ({"width": 130}, "not divisible by heads"), ({"vocab_size": 1000}, "too small"),
           ({"arch": "hf"}, "not implemented"), ({"quick_gelu": 1}, "quick_gelu"), ({"eos_id": 49408}, "eos_id")]
    for kwargs, match in bad:
        with pytest.raises(ValueError, match=match):
            TextTowerConfig.from_dict(kwargs)
