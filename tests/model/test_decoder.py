"""Decoder maths and the full architecture's tensor names/shapes (facts §1.5, §2)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from deepocr_cli.engine.kv_cache import PagedKVCache
from deepocr_cli.errors import CheckpointError
from deepocr_cli.model.configuration import DecoderConfig, DeepOcrConfig
from deepocr_cli.model.decoder import (
    DeepOcrMoE,
    DeepOcrRMSNorm,
    DeepOcrTextModel,
    apply_rotary_pos_emb,
    rope_cos_sin,
)
from deepocr_cli.model.modeling import DeepOcrForCausalLM
from deepocr_cli.model.testing import checkpoint_config


def _tiny_decoder(**overrides) -> DecoderConfig:
    return DeepOcrConfig.from_dict({**checkpoint_config("tiny"), **overrides}).decoder


def _full_model_on_meta() -> DeepOcrForCausalLM:
    cfg = DeepOcrConfig.from_dict(checkpoint_config("full"))
    with torch.device("meta"):
        return DeepOcrForCausalLM(cfg)


def test_full_architecture_has_exactly_the_checkpoint_tensors():
    state = _full_model_on_meta().state_dict()
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    assert len(shapes) == 2710
    assert sum(v.numel() for v in state.values()) == 3_336_106_240
    expected = {
        "model.embed_tokens.weight": (129280, 1280),
        "lm_head.weight": (129280, 1280),
        "model.norm.weight": (1280,),
        "model.image_newline": (1280,),
        "model.view_seperator": (1280,),
        "model.projector.layers.weight": (1280, 2048),
        "model.projector.layers.bias": (1280,),
        "model.layers.0.mlp.gate_proj.weight": (6848, 1280),
        "model.layers.0.mlp.down_proj.weight": (1280, 6848),
        "model.layers.0.self_attn.q_proj.weight": (1280, 1280),
        "model.layers.11.self_attn.o_proj.weight": (1280, 1280),
        "model.layers.1.mlp.gate.weight": (64, 1280),
        "model.layers.1.mlp.shared_experts.gate_proj.weight": (1792, 1280),
        "model.layers.11.mlp.shared_experts.down_proj.weight": (1280, 1792),
        "model.layers.5.mlp.experts.63.up_proj.weight": (896, 1280),
        "model.layers.5.mlp.experts.0.down_proj.weight": (1280, 896),
        "model.layers.3.input_layernorm.weight": (1280,),
        "model.layers.3.post_attention_layernorm.weight": (1280,),
        "model.sam_model.pos_embed": (1, 64, 64, 768),
        "model.sam_model.blocks.2.attn.rel_pos_h": (127, 64),
        "model.sam_model.blocks.0.attn.rel_pos_w": (27, 64),
        "model.sam_model.net_3.weight": (1024, 512, 3, 3),
        "model.vision_model.embeddings.position_embedding.weight": (257, 1024),
        "model.vision_model.transformer.layers.23.self_attn.qkv_proj.weight": (3072, 1024),
    }
    for key, shape in expected.items():
        assert shapes[key] == shape, key
    assert "model.layers.0.mlp.gate.weight" not in shapes  # layer 0 is dense
    assert sum(k.startswith("model.layers.") and ".experts." in k for k in shapes) == 11 * 64 * 3


def test_config_applies_deepseek_v2_defaults_for_missing_fields():
    dec = DeepOcrConfig.from_dict(checkpoint_config("full")).decoder
    assert (dec.rms_norm_eps, dec.rope_theta, dec.norm_topk_prob, dec.routed_scaling_factor) == (
        1e-6,
        10000.0,
        False,
        1.0,
    )
    assert dec.head_dim == 128
    assert dec.kv_bytes_per_token(2) == 61_440


def test_malformed_config_raises_checkpoint_error_naming_the_field():
    cfg = copy.deepcopy(checkpoint_config("tiny"))
    del cfg["language_config"]["hidden_size"], cfg["hidden_size"]
    with pytest.raises(CheckpointError, match="hidden_size"):
        DeepOcrConfig.from_dict(cfg)
    cfg = copy.deepcopy(checkpoint_config("tiny"))
    cfg["language_config"]["use_mla"] = True
    with pytest.raises(CheckpointError, match="use_mla"):
        DeepOcrConfig.from_dict(cfg)


def test_rmsnorm_and_rope_match_the_llama_reference():
    llama = pytest.importorskip("transformers.models.llama.modeling_llama")
    torch.manual_seed(0)
    x = torch.randn(2, 5, 16, dtype=torch.bfloat16)
    ours, ref = DeepOcrRMSNorm(16, 1e-6), llama.LlamaRMSNorm(16, 1e-6)
    with torch.no_grad():
        ours.weight.normal_()
        ref.weight.copy_(ours.weight)
    assert torch.equal(ours(x), ref(x))
    q, k = torch.randn(2, 3, 5, 16), torch.randn(2, 3, 5, 16)
    cos, sin = rope_cos_sin(torch.tensor([[0, 1, 2, 3, 4], [7, 8, 9, 10, 11]]), 16, 10000.0, torch.float32)
    got = apply_rotary_pos_emb(q, k, cos, sin)
    want = llama.apply_rotary_pos_emb(q, k, cos, sin)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


def _naive_moe(moe: DeepOcrMoE, x: torch.Tensor) -> torch.Tensor:
    """Per-token reference: softmax gate, top-k, no renormalisation, plus shared experts."""
    out = torch.zeros_like(x)
    for t in range(x.shape[0]):
        probs = F.softmax(x[t].float() @ moe.gate.weight.float().T, dim=-1)
        w, ids = probs.topk(moe.top_k)
        acc = torch.zeros(x.shape[1])
        for weight, e in zip(w.tolist(), ids.tolist(), strict=True):
            acc += weight * moe.experts[e](x[t : t + 1])[0].float()
        out[t] = acc.to(x.dtype) + moe.shared_experts(x[t : t + 1])[0]
    return out


@pytest.mark.parametrize("backend", ["loop", "grouped", "dense"])
def test_moe_routing_matches_a_naive_per_token_loop(backend):
    torch.manual_seed(0)
    cfg = _tiny_decoder()
    moe = DeepOcrMoE(cfg)
    for p in moe.parameters():
        torch.nn.init.normal_(p, std=0.3)
    x = torch.randn(37, cfg.hidden_size)
    ref = _naive_moe(moe, x)
    if backend == "grouped":
        if not hasattr(torch, "_grouped_mm"):
            pytest.skip("torch._grouped_mm unavailable")
        moe.fuse()
    moe.backend = backend
    with torch.no_grad():
        got = moe(x[None])[0]
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    # Routing weights are the raw softmax probabilities (norm_topk_prob false): they sum to < 1.
    _, w = moe.gate(x)
    assert bool((w.sum(-1) < 1).all())


def test_fuse_keeps_state_dict_keys_and_values():
    torch.manual_seed(1)
    moe = DeepOcrMoE(_tiny_decoder())
    for p in moe.parameters():
        torch.nn.init.normal_(p)
    before = {k: v.clone() for k, v in moe.state_dict().items()}
    moe.fuse()
    after = moe.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_paged_cache_prefill_in_chunks_and_decode_equal_a_full_forward():
    torch.manual_seed(0)
    cfg = _tiny_decoder()
    model = DeepOcrTextModel(cfg).eval()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.1)
    lengths = [11, 7]  # two sequences of different lengths share every forward
    xs = [torch.randn(n, cfg.hidden_size) for n in lengths]
    cache = PagedKVCache(num_layers=cfg.num_hidden_layers, kv_heads=cfg.num_key_value_heads,
                         head_dim=cfg.head_dim, dtype=torch.float32, device=torch.device("cpu"),
                         budget_bytes=10**7, slots=2, max_positions=64, block_size=4)
    with torch.no_grad():
        full = [model(x[None], torch.arange(len(x))[None], torch.ones(1, len(x), dtype=torch.bool))[0] for x in xs]
        # prefill chunks of 5 and 3 positions (rows right-padded to the wider one), then one decode step
        steps = [(0, [5, 3]), (None, [4, 3]), (None, [2, 1])]
        cached, got = [0, 0], [[], []]
        for _, new in steps:
            for slot in (0, 1):
                assert cache.grow(slot, cached[slot] + new[slot])
            paged = cache.batch([0, 1], cached, new)
            emb = torch.zeros(2, paged.width, cfg.hidden_size)
            for r in (0, 1):
                emb[r, : new[r]] = xs[r][cached[r] : cached[r] + new[r]]
            out = model(emb, paged.positions, paged.valid, paged)
            for r in (0, 1):
                got[r].append(out[r, : new[r]])
                cached[r] += new[r]
    assert cached == lengths
    for r in (0, 1):
        torch.testing.assert_close(torch.cat(got[r]), full[r], rtol=1e-5, atol=1e-5)
    assert cache.used_blocks == 3 + 2
    cache.release(0)
    assert cache.used_blocks == 2 and cache.free_blocks == cache.max_blocks - 2
