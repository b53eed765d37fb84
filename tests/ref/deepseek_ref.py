#!/usr/bin/python3
"""PyTorch reference of the DeepSeek-V3 architecture (spec: MLA, DeepSeekMoE,
MTP, balance loss), written independently of keel's C code, in float64.

usage: deepseek_ref.py make-fixture OUT [--variant full|dense] [--seed S]

Writes OUT/model (an HF-layout model dir in F32), OUT/model-bf16 and
OUT/model-fp8 (the same weights stored as BF16 and as FP8 e4m3 with 128x128
block scales), OUT/model-sharded (F32 in two files with an index), and OUT/expect.safetensors: tokens, targets, the main head's
logits, loss terms, the gradient of every parameter ("grad." + HF name), and
the losses of 10 AdamW steps. For the BF16/FP8 copies it also stores the
logits computed from the dequantised weights ("logits.bf16", "logits.fp8").
"""
import json
import math
import os
import struct
import sys

import numpy as np
import torch

torch.set_default_dtype(torch.float64)

# ---------------------------------------------------------------- safetensors

DT = {"F32": np.float32, "F64": np.float64, "I32": np.int32, "I64": np.int64, "U8": np.uint8, "F8_E4M3": np.uint8}


def st_write(path, tensors, meta=None):
    """tensors: name -> (dtype string, numpy array of the storage type)."""
    header, blobs, off = {}, [], 0
    if meta:
        header["__metadata__"] = meta
    for name, (dt, arr) in tensors.items():
        b = np.ascontiguousarray(arr).tobytes()
        header[name] = {"dtype": dt, "shape": list(arr.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def st_read(path):
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, end = e["data_offsets"]
        raw = data[8 + n + b:8 + n + end]
        if e["dtype"] == "BF16":
            u = np.frombuffer(raw, np.uint16).astype(np.uint32) << 16
            out[name] = u.view(np.float32).reshape(e["shape"])
        else:
            out[name] = np.frombuffer(raw, DT[e["dtype"]]).reshape(e["shape"])
    return out


def to_bf16(a):
    """float32 -> bf16 bits (round to nearest even)."""
    u = np.ascontiguousarray(a, np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return u.astype(np.uint16)


def e4m3_table():
    v = np.zeros(256)
    for b in range(256):
        s, e, m = b >> 7, (b >> 3) & 15, b & 7
        if e == 15 and m == 7:
            x = float("nan")
        elif e == 0:
            x = m * 2.0 ** -9
        else:
            x = (1 + m / 8) * 2.0 ** (e - 7)
        v[b] = -x if s else x
    return v


E4M3 = e4m3_table()


def to_fp8(w):
    """Block-quantise (R, C) to e4m3 with 128x128 scales: w ~ q * scale_inv."""
    R, C = w.shape
    br, bc = (R + 127) // 128, (C + 127) // 128
    q = np.zeros((R, C), np.uint8)
    scale = np.zeros((br, bc), np.float32)
    finite = np.where(np.isnan(E4M3), np.inf, E4M3)
    for i in range(br):
        for j in range(bc):
            blk = w[i * 128:(i + 1) * 128, j * 128:(j + 1) * 128]
            s = max(float(np.abs(blk).max()) / 448.0, 1e-12)
            scale[i, j] = s
            idx = np.abs(blk[..., None] / s - finite[None, None, :]).argmin(-1)
            q[i * 128:(i + 1) * 128, j * 128:(j + 1) * 128] = idx
    return q, scale


def fp8_dequant(q, scale):
    R, C = q.shape
    w = E4M3[q].astype(np.float32)
    return w * np.repeat(np.repeat(scale, 128, 0), 128, 1)[:R, :C]

# ---------------------------------------------------------------- the model


def rmsnorm(x, w, eps):
    return w * x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps)


def rope_freqs(c):
    dr = c["qk_rope_head_dim"]
    theta = c.get("rope_theta", 10000.0)
    f = [theta ** (-2.0 * j / dr) for j in range(dr // 2)]
    rs = c.get("rope_scaling")
    if rs and rs.get("type") == "yarn" and rs["factor"] > 1:
        L0, s = rs["original_max_position_embeddings"], rs["factor"]

        def corr(r):
            return dr * math.log(L0 / (2 * math.pi * r)) / (2 * math.log(theta))
        low = max(math.floor(corr(rs["beta_fast"])), 0)
        high = min(math.ceil(corr(rs["beta_slow"])), dr - 1)
        if low == high:
            high += 0.001
        for j in range(dr // 2):
            ramp = min(max((j - low) / (high - low), 0.0), 1.0)
            f[j] = f[j] * (1 - ramp) + f[j] / s * ramp
    return torch.tensor(f)


def rope(x, pos, freqs):
    """Interleaved pairs (x[2j], x[2j+1]) rotated by pos * freqs[j]; x (..., T, dr)."""
    ang = pos[:, None].to(x.dtype) * freqs[None, :].to(x.dtype)
    cos, sin = torch.cos(ang), torch.sin(ang)
    a, b = x[..., 0::2], x[..., 1::2]
    out = torch.stack([a * cos - b * sin, a * sin + b * cos], -1)
    return out.flatten(-2)


def softmax_scale(c):
    dq = c["qk_nope_head_dim"] + c["qk_rope_head_dim"]
    s = dq ** -0.5
    rs = c.get("rope_scaling")
    if rs and rs.get("type") == "yarn" and rs["factor"] > 1 and rs.get("mscale_all_dim"):
        m = 0.1 * rs["mscale_all_dim"] * math.log(rs["factor"]) + 1
        s *= m * m
    return s


def mla(c, P, pre, x, T):
    """x (B, T, d) -> (B, T, d)."""
    B = x.shape[0]
    H, dn, dr, dv = c["num_attention_heads"], c["qk_nope_head_dim"], c["qk_rope_head_dim"], c["v_head_dim"]
    rkv, eps = c["kv_lora_rank"], c.get("rms_norm_eps", 1e-6)
    pos = torch.arange(T)
    freqs = rope_freqs(c)
    if c.get("q_lora_rank"):
        q = rmsnorm(x @ P[pre + "self_attn.q_a_proj.weight"].T, P[pre + "self_attn.q_a_layernorm.weight"], eps)
        q = q @ P[pre + "self_attn.q_b_proj.weight"].T
    else:
        q = x @ P[pre + "self_attn.q_proj.weight"].T
    q = q.view(B, T, H, dn + dr).transpose(1, 2)  # (B, H, T, dq)
    q_nope, q_pe = q[..., :dn], rope(q[..., dn:], pos, freqs)
    kv = x @ P[pre + "self_attn.kv_a_proj_with_mqa.weight"].T
    ckv = rmsnorm(kv[..., :rkv], P[pre + "self_attn.kv_a_layernorm.weight"], eps)
    k_pe = rope(kv[..., rkv:], pos, freqs)[:, None]  # (B, 1, T, dr)
    kvb = (ckv @ P[pre + "self_attn.kv_b_proj.weight"].T).view(B, T, H, dn + dv).transpose(1, 2)
    k_nope, v = kvb[..., :dn], kvb[..., dn:]
    scores = (q_nope @ k_nope.transpose(-1, -2) + q_pe @ k_pe.transpose(-1, -2)) * softmax_scale(c)
    mask = torch.triu(torch.ones(T, T, dtype=torch.bool), 1)
    a = torch.softmax(scores.masked_fill(mask, float("-inf")), -1)
    o = (a @ v).transpose(1, 2).reshape(B, T, H * dv)
    return o @ P[pre + "self_attn.o_proj.weight"].T


def swiglu(x, g, u, d):
    return (torch.nn.functional.silu(x @ g.T) * (x @ u.T)) @ d.T


def moe(c, P, pre, bias, x, stats):
    B, T, d = x.shape
    E, K, G, TG = c["n_routed_experts"], c["num_experts_per_tok"], c.get("n_group", 1), c.get("topk_group", 1)
    logits = x @ P[pre + "mlp.gate.weight"].T
    s = torch.sigmoid(logits) if c["scoring_func"] == "sigmoid" else torch.softmax(logits, -1)
    sel_score = (s + bias if c["topk_method"] == "noaux_tc" else s).detach().clone()
    if G > 1 and TG < G:
        g = sel_score.view(B, T, G, E // G)
        gs = g.topk(2, -1).values.sum(-1) if c["topk_method"] == "noaux_tc" else g.max(-1).values
        keep = gs.topk(TG, -1).indices
        gmask = torch.ones(B, T, G, dtype=torch.bool)
        gmask.scatter_(-1, keep, False)
        sel_score = sel_score.masked_fill(gmask[..., None].expand(B, T, G, E // G).reshape(B, T, E), float("-inf"))
    sel = sel_score.topk(K, -1).indices  # (B, T, K)
    w = s.gather(-1, sel)
    if c.get("norm_topk_prob") and K > 1:
        w = w / (w.sum(-1, keepdim=True) + 1e-20)
    w = w * c.get("routed_scaling_factor", 1.0)
    y = torch.zeros_like(x).reshape(B * T, d)
    xf, self_, wf = x.reshape(B * T, d), sel.reshape(B * T, K), w.reshape(B * T, K)
    for e in range(E):  # each expert runs on the tokens routed to it
        rows, slot = (self_ == e).nonzero(as_tuple=True)
        if rows.numel() == 0:
            continue
        pe = pre + "mlp.experts.%d." % e
        out = swiglu(xf[rows], P[pe + "gate_proj.weight"], P[pe + "up_proj.weight"], P[pe + "down_proj.weight"])
        y = y.index_add(0, rows, wf[rows, slot][:, None] * out)
    y = y.reshape(B, T, d)
    if c.get("n_shared_experts"):
        ps = pre + "mlp.shared_experts."
        y = y + swiglu(x, P[ps + "gate_proj.weight"], P[ps + "up_proj.weight"], P[ps + "down_proj.weight"])
    load = torch.zeros(E)
    for e in range(E):
        load[e] = (sel == e).sum()
    stats["load"].append(load)
    alpha = stats["alpha"]
    if alpha > 0:
        f = torch.zeros(B, E)
        for b in range(B):
            for e in range(E):
                f[b, e] = (sel[b] == e).sum() * E / (K * T)
        P_ = (s / s.sum(-1, keepdim=True)).mean(1)  # (B, E)
        stats["bal"] = stats["bal"] + alpha * (f * P_).sum(-1).mean()
    return y


def block(c, P, l, bias, x, stats):
    pre = "model.layers.%d." % l
    eps = c.get("rms_norm_eps", 1e-6)
    T = x.shape[1]
    h = x + mla(c, P, pre, rmsnorm(x, P[pre + "input_layernorm.weight"], eps), T)
    u = rmsnorm(h, P[pre + "post_attention_layernorm.weight"], eps)
    L = c["num_hidden_layers"]
    is_moe = c.get("n_routed_experts") and (l >= L or (l >= c.get("first_k_dense_replace", 0)
                                                       and l % c.get("moe_layer_freq", 1) == 0))
    if is_moe:
        return h + moe(c, P, pre, bias[l], u, stats)
    return h + swiglu(u, P[pre + "mlp.gate_proj.weight"], P[pre + "mlp.up_proj.weight"], P[pre + "mlp.down_proj.weight"])


def forward(c, P, bias, x, y, lam, alpha):
    """Returns (loss, lm, mtp, bal, main logits, loads per MoE layer)."""
    eps = c.get("rms_norm_eps", 1e-6)
    B, T = x.shape
    L, D = c["num_hidden_layers"], c.get("num_nextn_predict_layers", 0)
    stats = {"load": [], "bal": torch.zeros(()), "alpha": alpha}
    h = P["model.embed_tokens.weight"][x]
    for l in range(L):
        h = block(c, P, l, bias, h, stats)
    z = rmsnorm(h, P["model.norm.weight"], eps)
    logits = z @ P["lm_head.weight"].T
    lm = torch.nn.functional.cross_entropy(logits.reshape(B * T, -1), y.reshape(-1))
    mtp = torch.zeros(())
    hp = z
    for k in range(1, D + 1):
        if T - k <= 0:
            break
        pre = "model.layers.%d." % (L + k - 1)
        e = rmsnorm(P["model.embed_tokens.weight"][x[:, k:]], P[pre + "enorm.weight"], eps)
        hn = rmsnorm(hp[:, :T - k], P[pre + "hnorm.weight"], eps)
        hk = torch.cat([e, hn], -1) @ P[pre + "eh_proj.weight"].T
        hk = block(c, P, L + k - 1, bias, hk, stats)
        zk = rmsnorm(hk, P[pre + "shared_head.norm.weight"], eps)
        lk = zk @ P["lm_head.weight"].T
        ce = torch.nn.functional.cross_entropy(lk.reshape(-1, lk.shape[-1]), y[:, k:].reshape(-1), reduction="sum")
        mtp = mtp + lam / D * ce / (B * T)
        hp = hk
    loss = lm + mtp + stats["bal"]
    return loss, lm, mtp, stats["bal"], logits, stats["load"]

# ---------------------------------------------------------------- fixtures


def config(variant):
    if variant == "full":
        return {"vocab_size": 37, "hidden_size": 16, "intermediate_size": 24, "moe_intermediate_size": 8,
                "num_hidden_layers": 2, "num_attention_heads": 2, "n_shared_experts": 1, "n_routed_experts": 8,
                "num_experts_per_tok": 2, "n_group": 4, "topk_group": 2, "first_k_dense_replace": 1,
                "routed_scaling_factor": 2.5, "scoring_func": "sigmoid", "topk_method": "noaux_tc",
                "norm_topk_prob": True, "q_lora_rank": 12, "kv_lora_rank": 10, "qk_nope_head_dim": 6,
                "qk_rope_head_dim": 4, "v_head_dim": 5, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
                "rope_scaling": {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 4,
                                 "beta_fast": 32.0, "beta_slow": 1.0, "mscale": 1.0, "mscale_all_dim": 1.0},
                "num_nextn_predict_layers": 2, "aux_loss_alpha": 0.01, "max_position_embeddings": 64}
    # V2-Lite-like: no q-LoRA, softmax greedy routing, no groups, no MTP, plain RoPE
    return {"vocab_size": 29, "hidden_size": 12, "intermediate_size": 20, "moe_intermediate_size": 6,
            "num_hidden_layers": 2, "num_attention_heads": 3, "n_shared_experts": 2, "n_routed_experts": 6,
            "num_experts_per_tok": 3, "first_k_dense_replace": 1, "routed_scaling_factor": 1.0,
            "scoring_func": "softmax", "topk_method": "greedy", "norm_topk_prob": False, "q_lora_rank": None,
            "kv_lora_rank": 8, "qk_nope_head_dim": 4, "qk_rope_head_dim": 2, "v_head_dim": 3,
            "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "rope_scaling": None, "aux_loss_alpha": 0.001,
            "max_position_embeddings": 64}


def param_names(c):
    """(name, shape, is_norm) in keel's table order (any order works for files)."""
    d, H = c["hidden_size"], c["num_attention_heads"]
    dn, dr, dv = c["qk_nope_head_dim"], c["qk_rope_head_dim"], c["v_head_dim"]
    rq, rkv, V = c.get("q_lora_rank") or 0, c["kv_lora_rank"], c["vocab_size"]
    L, D, E = c["num_hidden_layers"], c.get("num_nextn_predict_layers", 0), c.get("n_routed_experts", 0)
    out = [("model.embed_tokens.weight", (V, d), False)]
    for l in range(L + D):
        p = "model.layers.%d." % l
        if l >= L:
            out += [(p + "enorm.weight", (d,), True), (p + "hnorm.weight", (d,), True),
                    (p + "eh_proj.weight", (d, 2 * d), False), (p + "shared_head.norm.weight", (d,), True)]
        out.append((p + "input_layernorm.weight", (d,), True))
        if rq:
            out += [(p + "self_attn.q_a_proj.weight", (rq, d), False), (p + "self_attn.q_a_layernorm.weight", (rq,), True),
                    (p + "self_attn.q_b_proj.weight", (H * (dn + dr), rq), False)]
        else:
            out.append((p + "self_attn.q_proj.weight", (H * (dn + dr), d), False))
        out += [(p + "self_attn.kv_a_proj_with_mqa.weight", (rkv + dr, d), False),
                (p + "self_attn.kv_a_layernorm.weight", (rkv,), True),
                (p + "self_attn.kv_b_proj.weight", (H * (dn + dv), rkv), False),
                (p + "self_attn.o_proj.weight", (d, H * dv), False),
                (p + "post_attention_layernorm.weight", (d,), True)]
        is_moe = E and (l >= L or l >= c.get("first_k_dense_replace", 0))
        if not is_moe:
            I = c["intermediate_size"]
            out += [(p + "mlp.gate_proj.weight", (I, d), False), (p + "mlp.up_proj.weight", (I, d), False),
                    (p + "mlp.down_proj.weight", (d, I), False)]
        else:
            Ie, S = c["moe_intermediate_size"], c.get("n_shared_experts") or 0
            out.append((p + "mlp.gate.weight", (E, d), False))
            for e in range(E):
                out += [(p + "mlp.experts.%d.gate_proj.weight" % e, (Ie, d), False),
                        (p + "mlp.experts.%d.up_proj.weight" % e, (Ie, d), False),
                        (p + "mlp.experts.%d.down_proj.weight" % e, (d, Ie), False)]
            if S:
                out += [(p + "mlp.shared_experts.gate_proj.weight", (S * Ie, d), False),
                        (p + "mlp.shared_experts.up_proj.weight", (S * Ie, d), False),
                        (p + "mlp.shared_experts.down_proj.weight", (d, S * Ie), False)]
    out += [("model.norm.weight", (d,), True), ("lm_head.weight", (V, d), False)]
    return out


FP8_KINDS = ("q_a_proj", "q_b_proj", "q_proj", "kv_a_proj_with_mqa", "kv_b_proj", "o_proj", "gate_proj", "up_proj",
             "down_proj")


def make_fixture(out, variant, seed):
    torch.manual_seed(seed)
    c = config(variant)
    os.makedirs(out, exist_ok=True)
    names = param_names(c)
    P32 = {}
    for name, shape, is_norm in names:
        if is_norm:
            P32[name] = (1 + 0.2 * torch.randn(shape)).float().numpy()
        else:
            P32[name] = (0.3 * torch.randn(shape)).float().numpy()
    L, D, E = c["num_hidden_layers"], c.get("num_nextn_predict_layers", 0), c.get("n_routed_experts", 0)
    bias = {l: torch.zeros(E) for l in range(L + D)}
    if c["topk_method"] == "noaux_tc":
        for l in range(L + D):
            bias[l] = (0.05 * torch.arange(E).remainder(3)).float().double()
    B, T = 2, 7
    x = torch.randint(0, c["vocab_size"], (B, T))
    y = torch.randint(0, c["vocab_size"], (B, T))
    lam, alpha = 0.3, c.get("aux_loss_alpha", 0.0)

    def save_dir(sub, conv):
        os.makedirs(os.path.join(out, sub), exist_ok=True)
        with open(os.path.join(out, sub, "config.json"), "w") as f:
            json.dump(c, f, indent=1)
        tensors, deq = {}, {}
        for name, shape, _ in names:
            a = P32[name]
            kind = name.split(".")[-2]
            if conv == "bf16":
                tensors[name] = ("BF16", to_bf16(a))
                deq[name] = (to_bf16(a).astype(np.uint32) << 16).view(np.float32)
            elif conv == "fp8" and a.ndim == 2 and kind in FP8_KINDS:
                q, s = to_fp8(a)
                tensors[name] = ("F8_E4M3", q)
                tensors[name + "_scale_inv"] = ("F32", s)
                deq[name] = fp8_dequant(q, s)
            else:
                tensors[name] = ("F32", a)
                deq[name] = a
        for l in range(L + D):
            if c["topk_method"] == "noaux_tc" and ("model.layers.%d.mlp.gate.weight" % l) in P32:
                tensors["model.layers.%d.mlp.gate.e_score_correction_bias" % l] = ("F32", bias[l].float().numpy())
        st_write(os.path.join(out, sub, "model.safetensors"), tensors, {"format": "pt"})
        return deq

    save_dir("model", "f32")
    # the same F32 weights split over two files with model.safetensors.index.json
    os.makedirs(os.path.join(out, "model-sharded"), exist_ok=True)
    with open(os.path.join(out, "model-sharded", "config.json"), "w") as f:
        json.dump(c, f, indent=1)
    whole = st_read(os.path.join(out, "model", "model.safetensors"))
    names_all = sorted(whole)
    parts = [names_all[:len(names_all) // 2], names_all[len(names_all) // 2:]]
    weight_map = {}
    for i, part in enumerate(parts):
        fname = "model-%05d-of-%05d.safetensors" % (i + 1, len(parts))
        st_write(os.path.join(out, "model-sharded", fname), {n: ("F32", whole[n]) for n in part})
        weight_map.update({n: fname for n in part})
    with open(os.path.join(out, "model-sharded", "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": sum(whole[n].nbytes for n in names_all)}, "weight_map": weight_map}, f)
    expect = {}
    for conv in ("bf16", "fp8"):
        deq = save_dir("model-" + conv, conv)
        Pd = {k: torch.tensor(v.astype(np.float64)) for k, v in deq.items()}
        with torch.no_grad():
            _, _, _, _, lg, _ = forward(c, Pd, bias, x, y, lam, alpha)
        expect["logits." + conv] = ("F32", lg.float().numpy())
    P = {k: torch.tensor(v.astype(np.float64), requires_grad=True) for k, v in P32.items()}
    loss, lm, mtp, bal, logits, _ = forward(c, P, bias, x, y, lam, alpha)
    loss.backward()
    expect["tokens"] = ("I32", x.int().numpy())
    expect["targets"] = ("I32", y.int().numpy())
    expect["logits"] = ("F32", logits.detach().float().numpy())
    expect["loss"] = ("F64", np.array([loss.item(), lm.item(), mtp.item(), bal.item()]))
    summary = "loss %.6f lm %.6f mtp %.6f bal %.6f" % (loss.item(), lm.item(), mtp.item(), bal.item())
    for name, _, _ in names:
        g = P[name].grad if P[name].grad is not None else torch.zeros_like(P[name])  # unchosen experts
        expect["grad." + name] = ("F32", g.float().numpy())
    # 10 AdamW steps: lr 1e-2, betas (0.9, 0.95), eps 1e-8, decay 0.1 on matrices, bias update 1e-3 after each
    lr, b1, b2, epsa, wd, gamma = 1e-2, 0.9, 0.95, 1e-8, 0.1, 1e-3
    Ps = {k: torch.tensor(v.astype(np.float64)) for k, v in P32.items()}
    m1 = {k: torch.zeros_like(v) for k, v in Ps.items()}
    m2 = {k: torch.zeros_like(v) for k, v in Ps.items()}
    norms = {n for n, _, is_norm in names if is_norm}
    losses = []
    for step in range(1, 11):
        for v in Ps.values():
            v.requires_grad_(True)
            v.grad = None
        loss, _, _, _, _, loads = forward(c, Ps, bias, x, y, lam, alpha)
        loss.backward()
        losses.append(loss.item())
        with torch.no_grad():
            for k, v in Ps.items():
                g = v.grad if v.grad is not None else torch.zeros_like(v)
                m1[k] = b1 * m1[k] + (1 - b1) * g
                m2[k] = b2 * m2[k] + (1 - b2) * g * g
                mh, vh = m1[k] / (1 - b1 ** step), m2[k] / (1 - b2 ** step)
                v -= lr * (mh / (vh.sqrt() + epsa) + (0 if k in norms else wd) * v)
        if c["topk_method"] == "noaux_tc":
            moe_layers = [l for l in range(L + D) if ("model.layers.%d.mlp.gate.weight" % l) in P32]
            for l, load in zip(moe_layers, loads):
                bias[l] = bias[l] + gamma * torch.sign(load.mean() - load)
        Ps = {k: v.detach() for k, v in Ps.items()}
    expect["adamw_losses"] = ("F64", np.array(losses))
    st_write(os.path.join(out, "expect.safetensors"), expect)
    print("fixture %s (%s): %s; 10 AdamW steps %.6f -> %.6f" % (out, variant, summary, losses[0], losses[-1]))


def main():
    args = sys.argv[1:]
    if len(args) < 2 or args[0] != "make-fixture":
        print(__doc__)
        return 2
    variant = args[args.index("--variant") + 1] if "--variant" in args else "full"
    seed = int(args[args.index("--seed") + 1]) if "--seed" in args else 1
    make_fixture(args[1], variant, seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
