"""A PyTorch twin of suti's DiT denoiser at the `tiny` or `small` preset (same layers, widths and
token counts: 32x32, patch 4, width 128 / 256, depth 4 / 6, 4 heads, 12 text tokens, adaLN-Zero,
v-prediction, AdamW), timed on the same machine as `suti bench train` / `suti bench sample` to give
the candle/PyTorch ratio. `--json` prints one JSON object for benches/reference/compare.sh.
Reference only: not part of the product."""

import argparse
import json
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

IMAGE, PATCH, WIDTH, DEPTH, HEADS, TEXT_DIM, TEXT_TOKENS = 32, 4, 256, 6, 4, 384, 12
# (width, depth) of each preset; the rest is shared.
PRESETS = {"tiny": (128, 4), "small": (256, 6)}
GRID = IMAGE // PATCH
TOKENS = GRID * GRID


def sincos_2d(grid, width):
    quarter = width // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter) / quarter)
    rows = []
    for r in range(grid):
        for c in range(grid):
            parts = []
            for pos in (r, c):
                parts += [torch.sin(pos * omega), torch.cos(pos * omega)]
            rows.append(torch.cat(parts))
    return torch.stack(rows).unsqueeze(0)


def timestep_embedding(t, dim=256):
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half) / half)
    args = t[:, None] * 1000 * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


def layer_norm(x):
    return F.layer_norm(x, x.shape[-1:], eps=1e-6)


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.q, self.k, self.v, self.o = (nn.Linear(WIDTH, WIDTH) for _ in range(4))
        self.fc1, self.fc2 = nn.Linear(WIDTH, 4 * WIDTH), nn.Linear(4 * WIDTH, WIDTH)
        self.ada = nn.Linear(WIDTH, 6 * WIDTH)
        nn.init.zeros_(self.ada.weight)
        nn.init.zeros_(self.ada.bias)

    def heads(self, x):
        b, t, w = x.shape
        return x.view(b, t, HEADS, w // HEADS).transpose(1, 2)

    def forward(self, x, cond, text, mask):
        s1, c1, g1, s2, c2, g2 = self.ada(F.silu(cond)).chunk(6, dim=-1)
        h = layer_norm(x) * (1 + c1) + s1
        q = self.heads(self.q(h))
        k = self.heads(torch.cat([self.k(h), self.k(text)], 1))
        v = self.heads(torch.cat([self.v(h), self.v(text)], 1))
        scores = q @ k.transpose(-1, -2) / math.sqrt(WIDTH // HEADS) + mask
        out = (scores.softmax(-1) @ v).transpose(1, 2).reshape(x.shape)
        x = x + self.o(out) * g1
        h = layer_norm(x) * (1 + c2) + s2
        return x + self.fc2(F.gelu(self.fc1(h), approximate="tanh")) * g2


class Dit(nn.Module):
    def __init__(self):
        super().__init__()
        pd = PATCH * PATCH * 3
        self.patch = nn.Linear(pd, WIDTH)
        self.register_buffer("pos", sincos_2d(GRID, WIDTH))
        self.t1, self.t2 = nn.Linear(256, WIDTH), nn.Linear(WIDTH, WIDTH)
        self.pool, self.proj = nn.Linear(TEXT_DIM, WIDTH), nn.Linear(TEXT_DIM, WIDTH)
        self.blocks = nn.ModuleList(Block() for _ in range(DEPTH))
        self.final_ada, self.final = nn.Linear(WIDTH, 2 * WIDTH), nn.Linear(WIDTH, pd)
        for layer in (self.final_ada, self.final):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x, t, tokens, mask, pooled):
        b = x.shape[0]
        p = x.view(b, 3, GRID, PATCH, GRID, PATCH).permute(0, 2, 4, 3, 5, 1).reshape(b, TOKENS, -1)
        x = self.patch(p) + self.pos
        cond = (self.t2(F.silu(self.t1(timestep_embedding(t)))) + self.pool(pooled)).unsqueeze(1)
        text = self.proj(tokens)
        full_mask = torch.cat([torch.zeros(b, TOKENS), (1 - mask) * -1e9], 1)[:, None, None, :]
        for block in self.blocks:
            x = block(x, cond, text, full_mask)
        shift, scale = self.final_ada(F.silu(cond)).chunk(2, dim=-1)
        x = self.final(layer_norm(x) * (1 + scale) + shift)
        return x.view(b, GRID, GRID, PATCH, PATCH, 3).permute(0, 5, 1, 3, 2, 4).reshape(b, 3, IMAGE, IMAGE)


def alpha_sigma(t):
    s = 0.008
    f = lambda u: torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2
    ab = (f(t) / f(torch.zeros(1))).clamp(0, 1)
    return ab.sqrt(), (1 - ab).sqrt()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="small")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--sample-images", type=int, default=4)
    parser.add_argument("--sample-steps", type=int, default=25)
    args = parser.parse_args()
    global WIDTH, DEPTH
    WIDTH, DEPTH = PRESETS[args.preset]
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = Dit()
    params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.0)
    b = args.batch
    total = 0.0
    for step in range(args.steps + 1):
        x0 = torch.randn(b, 3, IMAGE, IMAGE).tanh()
        tokens, mask, pooled = torch.randn(b, TEXT_TOKENS, TEXT_DIM), torch.ones(b, TEXT_TOKENS), torch.randn(b, TEXT_DIM) * 0.05
        start = time.perf_counter()
        t = torch.rand(b) * 0.999
        a, s = alpha_sigma(t)
        a, s = a.view(b, 1, 1, 1), s.view(b, 1, 1, 1)
        eps = torch.randn_like(x0)
        loss = ((model(a * x0 + s * eps, t, tokens, mask, pooled) - (a * eps - s * x0)) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step > 0:
            total += time.perf_counter() - start
    train_rate = b * args.steps / total
    if not args.json:
        print(f"pytorch {torch.__version__} {args.preset} twin ({params / 1e6:.1f}M params), batch {b}, "
              f"{args.threads} threads: {train_rate:.2f} img/s, {1000 * total / args.steps:.1f} ms/step")
    n = args.sample_images
    with torch.no_grad():
        tokens, mask, pooled = torch.randn(2 * n, TEXT_TOKENS, TEXT_DIM), torch.ones(2 * n, TEXT_TOKENS), torch.randn(2 * n, TEXT_DIM) * 0.05
        x = torch.randn(2 * n, 3, IMAGE, IMAGE)
        start = time.perf_counter()
        for i in range(args.sample_steps):
            model(x, torch.full((2 * n,), 0.5), tokens, mask, pooled)
        elapsed = time.perf_counter() - start
    if args.json:
        print(json.dumps({"torch": torch.__version__, "preset": args.preset, "threads": args.threads,
                          "train_images_per_second": train_rate, "batch": b,
                          "sample_ms": 1000 * elapsed, "sample_images": n,
                          "sample_steps": args.sample_steps}))
    else:
        print(f"pytorch {args.preset} twin sampling: {1000 * elapsed:.0f} ms per request of {n} images "
              f"({args.sample_steps} steps, both guidance branches batched)")


if __name__ == "__main__":
    main()
