#!/usr/bin/python3
"""PyTorch reference of each backend op on small shapes, forward and backward
(autograd, float64). usage: ops_ref.py OUT.safetensors [--seed S]"""
import sys

import numpy as np
import torch

sys.path.insert(0, __import__("os").path.dirname(__file__))
from deepseek_ref import st_write  # noqa: E402

torch.set_default_dtype(torch.float64)


def main():
    out = sys.argv[1]
    seed = int(sys.argv[sys.argv.index("--seed") + 1]) if "--seed" in sys.argv else 3
    torch.manual_seed(seed)
    T_ = {}

    def put(name, t, dt="F32"):
        a = t.detach().numpy()
        T_[name] = (dt, a.astype(np.float32 if dt == "F32" else np.int32))

    def leaf(*shape, scale=1.0):
        return (scale * torch.randn(*shape)).requires_grad_(True)

    # matmul: out = x w^T
    x, w = leaf(5, 37), leaf(19, 37)
    o = x @ w.T
    d = torch.randn_like(o)
    o.backward(d)
    for k, v in dict(x=x, w=w, dout=d, out=o, dx=x.grad, dw=w.grad).items():
        put("matmul." + k, v)
    # rmsnorm
    x, w = leaf(6, 24, scale=2.0), (1 + 0.3 * torch.randn(24)).requires_grad_(True)
    o = w * x * torch.rsqrt((x * x).mean(-1, keepdim=True) + 1e-6)
    d = torch.randn_like(o)
    o.backward(d)
    for k, v in dict(x=x, w=w, dout=d, out=o, dx=x.grad, dw=w.grad).items():
        put("rmsnorm." + k, v)
    # rope: N rows of 3 vectors of width 8, interleaved pairs
    N, nv, dr = 5, 3, 8
    x = leaf(N, nv, dr)
    pos = torch.tensor([0, 3, 7, 1, 12])
    freqs = 10000.0 ** (-2.0 * torch.arange(dr // 2) / dr)
    ang = pos[:, None, None].double() * freqs[None, None, :]
    a, b = x[..., 0::2], x[..., 1::2]
    o = torch.stack([a * torch.cos(ang) - b * torch.sin(ang), a * torch.sin(ang) + b * torch.cos(ang)], -1).flatten(-2)
    d = torch.randn_like(o)
    o.backward(d)
    for k, v in dict(x=x, dout=d, out=o, dx=x.grad, freqs=freqs).items():
        put("rope." + k, v)
    put("rope.pos", pos, "I32")
    # attention (MLA naive form)
    B, T, H, dn, drr, dv, scale = 2, 6, 3, 5, 4, 7, 0.37
    q, kv, kpe = leaf(B * T, H, dn + drr), leaf(B * T, H, dn + dv), leaf(B * T, drr)
    qq = q.view(B, T, H, -1).transpose(1, 2)
    kk = kv.view(B, T, H, -1).transpose(1, 2)
    kp = kpe.view(B, 1, T, drr)
    s = (qq[..., :dn] @ kk[..., :dn].transpose(-1, -2) + qq[..., dn:] @ kp.transpose(-1, -2)) * scale
    s = s.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), float("-inf"))
    att = torch.softmax(s, -1)
    o = (att @ kk[..., dn:]).transpose(1, 2).reshape(B * T, H, dv)
    d = torch.randn_like(o)
    o.backward(d)
    for k, v in dict(q=q, kv=kv, kpe=kpe, dout=d, out=o, att=att, dq=q.grad, dkv=kv.grad, dkpe=kpe.grad).items():
        put("attention." + k, v)
    # swiglu
    g, u = leaf(4, 33, scale=2.0), leaf(4, 33)
    h = torch.nn.functional.silu(g) * u
    d = torch.randn_like(h)
    h.backward(d)
    for k, v in dict(g=g, u=u, dh=d, h=h, dg=g.grad, du=u.grad).items():
        put("swiglu." + k, v)
    # cross-entropy with an ignored row, gradient scaled by 0.25
    logits = leaf(5, 50, scale=3.0)
    tg = torch.tensor([3, 49, -1, 0, 17])
    ls = torch.nn.functional.cross_entropy(logits, tg.clamp(min=0), reduction="none") * (tg >= 0)
    (0.25 * ls.sum()).backward()
    for k, v in dict(logits=logits, losses=ls, dlogits=logits.grad).items():
        put("ce." + k, v)
    put("ce.targets", tg, "I32")
    # AdamW, third step
    p, gr, m, v = torch.randn(40), torch.randn(40), 0.1 * torch.randn(40), 0.01 * torch.rand(40)
    lr, b1, b2, eps, wd, t = 1e-2, 0.9, 0.95, 1e-8, 0.1, 3
    m2, v2 = b1 * m + (1 - b1) * gr, b2 * v + (1 - b2) * gr * gr
    p2 = p - lr * ((m2 / (1 - b1 ** t)) / ((v2 / (1 - b2 ** t)).sqrt() + eps) + wd * p)
    for k, val in dict(p=p, g=gr, m=m, v=v, p2=p2, m2=m2, v2=v2).items():
        put("adamw." + k, val)
    st_write(out, T_)
    print("ops fixture:", out, len(T_), "arrays")


if __name__ == "__main__":
    main()
