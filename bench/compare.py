#!/usr/bin/python3
"""The PyTorch side of bench/compare.sh: trains the reference model of a config
(tests/ref/deepseek_ref.py, float32, AdamW) on random tokens and prints tokens/s.
usage: compare.py CONFIG BATCH SEQ STEPS THREADS"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "ref"))
import torch  # noqa: E402
import deepseek_ref as ref  # noqa: E402

torch.set_default_dtype(torch.float32)


def main():
    cfg, B, T, steps, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    torch.set_num_threads(threads)
    c = json.load(open(cfg))
    torch.manual_seed(0)
    P = {}
    for name, shape, is_norm in ref.param_names(c):
        P[name] = (torch.ones(shape) if is_norm else 0.006 * torch.randn(shape)).requires_grad_(True)
    L, D, E = c["num_hidden_layers"], c.get("num_nextn_predict_layers") or 0, c.get("n_routed_experts") or 0
    bias = {l: torch.zeros(max(E, 1)) for l in range(L + D)}
    opt = torch.optim.AdamW(P.values(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)
    times = []
    for s in range(steps + 1):
        x = torch.randint(0, c["vocab_size"], (B, T))
        y = torch.randint(0, c["vocab_size"], (B, T))
        t0 = time.time()
        opt.zero_grad()
        loss = ref.forward(c, P, bias, x, y, 0.3, c.get("aux_loss_alpha", 0.0))[0]
        loss.backward()
        opt.step()
        if s > 0:  # the first step warms up
            times.append(time.time() - t0)
    print("pytorch %.1f tokens/s (%d steps of %d x %d, %d threads, torch %s)" %
          (B * T * len(times) / sum(times), len(times), B, T, threads, torch.__version__))


if __name__ == "__main__":
    main()
