"""Which memory layout runs a node set's depthwise 3x3 conv fastest, conversions included?

wirelang keeps a graph's states in the (C, N, H, W) layout, where an edge product is one matrix
product without concatenation, and runs a set's depthwise conv as one conv over (1, C*N, H, W)
with C*N groups (`wirelang/backend/kernels.py`). This measures that against the alternatives a
reader would suggest, on the shapes of the paper's networks, each in one process alternating
round by round:

- `cn_groups`: today's (1, C*N, H, W) conv, C*N groups;
- `nchw`: transpose to (N, C, H, W), conv with C groups, transpose back (copies counted);
- `nhwc`: the same through channels-last memory (oneDNN's preferred depthwise layout);
- `nhwc_conv_only`: the channels-last conv alone, as if the whole network lived in NHWC.

    python benchmarks/depthwise_layout.py                # inference (batch 64) and training
    python benchmarks/depthwise_layout.py --threads 2 --rounds 5

Prints one row per shape: milliseconds per call (median over rounds), and the best layout.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

# (channels, batch, side): the quick start's and cifar_tiny's sets (training, batch 128 at 8x8)
# and MobileNet-DNW's node sets at 224 (inference, batch 64)
TRAINING = [(192, 128, 8), (32, 128, 8)]
INFERENCE = [(64, 64, 112), (256, 64, 28), (3328, 64, 7), (192, 1, 8), (3328, 1, 7)]


def cn_groups(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    c, n, h, s = x.shape
    y = F.conv2d(x.reshape(1, c * n, h, s), w.repeat_interleave(n, 0), None, 1, 1, 1, c * n)
    return y.view(c, n, h, s)


def nchw(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    y = F.conv2d(x.transpose(0, 1).contiguous(), w, None, 1, 1, 1, x.shape[0])
    return y.transpose(0, 1).contiguous()


def nhwc(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    xn = x.permute(1, 0, 2, 3).contiguous(memory_format=torch.channels_last)
    wn = w.contiguous(memory_format=torch.channels_last)
    y = F.conv2d(xn, wn, None, 1, 1, 1, x.shape[0])
    return y.permute(1, 0, 2, 3).contiguous()


LAYOUTS = {"cn_groups": cn_groups, "nchw": nchw, "nhwc": nhwc}


def _time(fn, rounds: int) -> list[float]:
    fn()  # warm-up: oneDNN builds its kernel on the first call of a shape
    out = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def measure(shape: tuple[int, int, int], train: bool, rounds: int) -> dict[str, float]:
    c, n, s = shape
    x = torch.randn(c, n, s, s)
    w = torch.randn(c, 1, 3, 3)
    reference = cn_groups(x, w)
    calls = {}
    for name, layout in LAYOUTS.items():
        assert torch.allclose(layout(x, w), reference, atol=1e-4), name

        def call(layout=layout):
            if not train:
                with torch.inference_mode():
                    return layout(x, w)
            xg, wg = x.detach().requires_grad_(), w.detach().requires_grad_()
            layout(xg, wg).sum().backward()
            return None

        calls[name] = call
    xn = x.permute(1, 0, 2, 3).contiguous(memory_format=torch.channels_last)
    wn = w.contiguous(memory_format=torch.channels_last)

    def conv_only():
        if not train:
            with torch.inference_mode():
                return F.conv2d(xn, wn, None, 1, 1, 1, c)
        xg, wg = xn.detach().requires_grad_(), wn.detach().requires_grad_()
        F.conv2d(xg, wg, None, 1, 1, 1, c).sum().backward()
        return None

    calls["nhwc_conv_only"] = conv_only
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):  # alternate, so that load drifts hit every layout alike
        for name, fn in calls.items():
            times[name] += _time(fn, 1)
    return {name: 1e3 * statistics.median(ts) for name, ts in times.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"threads {args.threads}, median of {args.rounds} rounds, ms per call")
    print("| pass | C x N x side | " + " | ".join([*LAYOUTS, "nhwc_conv_only"]) + " | fastest |")
    print("|---|---|" + "---:|" * (len(LAYOUTS) + 1) + "---|")
    for train, shapes in ((True, TRAINING), (False, INFERENCE)):
        for shape in shapes:
            ms = measure(shape, train, args.rounds)
            fastest = min(LAYOUTS, key=ms.get)
            cells = " | ".join(f"{ms[k]:.2f}" for k in ms)
            what = "forward+backward" if train else "inference"
            print(f"| {what} | {' x '.join(map(str, shape))} | {cells} | {fastest} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
