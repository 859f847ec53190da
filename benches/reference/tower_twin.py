"""A PyTorch twin of suti's image tower: EfficientNet-Lite0 with the same ImageNet weights (the
`.pth` that scripts/fetch-assets fetched), batch norms folded into the convolutions as suti folds
them, TensorFlow "SAME" padding, timed on the same machine and threads as `suti bench tower` to
give the candle/PyTorch ratio. PyTorch gets its best: symmetric padding inside the convolution
where SAME is symmetric, and the faster of NCHW and channels-last memory formats.
Reference only: not part of the product."""

import argparse
import json
import os
import time

import torch
import torch.nn.functional as F

STRIDES = [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1]
BN_EPS = 1e-3


def folded(state, conv, bn):
    w = state[f"{conv}.weight"]
    scale = state[f"{bn}.weight"] / (state[f"{bn}.running_var"] + BN_EPS).sqrt()
    bias = state[f"{bn}.bias"] - state[f"{bn}.running_mean"] * scale
    return w * scale.view(-1, 1, 1, 1), bias


class Conv:
    def __init__(self, state, conv, bn, stride):
        self.weight, self.bias = folded(state, conv, bn)
        self.stride = stride
        self.groups = self.weight.shape[0] if self.weight.shape[1] == 1 else 1
        self.k = self.weight.shape[2]

    def __call__(self, x, relu6):
        n = x.shape[-1]
        out = -(-n // self.stride)
        pad = max((out - 1) * self.stride + self.k - n, 0)
        if pad % 2 == 0:
            y = F.conv2d(x, self.weight, self.bias, self.stride, pad // 2, 1, self.groups)
        else:
            x = F.pad(x, (pad // 2, pad - pad // 2, pad // 2, pad - pad // 2))
            y = F.conv2d(x, self.weight, self.bias, self.stride, 0, 1, self.groups)
        return F.relu6(y) if relu6 else y


class Tower:
    def __init__(self, state):
        self.stem = Conv(state, "_conv_stem", "_bn0", 2)
        self.blocks = []
        for i, stride in enumerate(STRIDES):
            p = f"_blocks.{i}"
            expand = Conv(state, f"{p}._expand_conv", f"{p}._bn0", 1) if f"{p}._expand_conv.weight" in state else None
            dw = Conv(state, f"{p}._depthwise_conv", f"{p}._bn1", stride)
            proj = Conv(state, f"{p}._project_conv", f"{p}._bn2", 1)
            in_ch = expand.weight.shape[1] if expand else dw.weight.shape[0]
            self.blocks.append((expand, dw, proj, stride == 1 and in_ch == proj.weight.shape[0]))
        self.head = Conv(state, "_conv_head", "_bn1", 1)

    def features(self, x):
        x = self.stem(x, True)
        for expand, dw, proj, residual in self.blocks:
            y = expand(x, True) if expand else x
            y = proj(dw(y, True), False)
            x = x + y if residual else y
        return self.head(x, True).mean((2, 3))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--side", type=int, default=224)
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--weights", default=os.path.join(
        os.environ.get("SUTI_ASSETS_DIR", os.path.expanduser("~/.cache/suti/assets")),
        "efficientnet", "efficientnet-lite0.pth"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tower = Tower(torch.load(args.weights, map_location="cpu"))
    torch.manual_seed(0)
    x = torch.rand(args.batch, 3, args.side, args.side)
    rates = {}
    with torch.no_grad():
        for name, fmt in (("nchw", torch.contiguous_format), ("channels_last", torch.channels_last)):
            xi = x.contiguous(memory_format=fmt)
            tower.features(xi)  # warm-up
            start = time.perf_counter()
            for _ in range(args.batches):
                tower.features(xi)
            rates[name] = args.batch * args.batches / (time.perf_counter() - start)
    best = max(rates, key=rates.get)
    if args.json:
        print(json.dumps({"torch": torch.__version__, "threads": args.threads, "batch": args.batch,
                          "side": args.side, "images_per_second": rates[best], "memory_format": best,
                          "rates": rates}))
        return
    print(f"pytorch {torch.__version__} EfficientNet-Lite0 twin, batch {args.batch} at "
          f"{args.side}x{args.side}, {args.threads} threads: {rates[best]:.2f} images/s "
          f"(best of nchw {rates['nchw']:.2f}, channels_last {rates['channels_last']:.2f})")


if __name__ == "__main__":
    main()
