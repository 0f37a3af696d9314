"""Diagnostic: where DreamerV2's conv encoder and decoder spend an update's convolution time on CPU.

    python bench/probe_conv_stack.py [--depth 8] [--batch 512] [--repeats 7] [--bf16]

Times forward + backward (gradients of input and weights, as in an update) of every convolution
of rlkd's ``ConvEncoder`` and ``ConvDecoder`` (the modules the agent trains, channels-last as
there) one layer at a time on a random input of the layer's shape, in this process with one torch
thread: median milliseconds, share of the stack, and the arithmetic rate (3x the forward's
multiply-adds x 2 per second: forward, input gradient and weight gradient cost the same). With
``--bf16`` each layer is also timed under bfloat16 autocast. Pin it (``taskset -c 0``) on an idle
machine. The batch is B x T of the update (16 x 32 = 512 at the CPU sizes).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from rlkd.world_model.codecs import ConvDecoder, ConvEncoder


def layers(depth: int) -> list[tuple[str, nn.Module, tuple[int, int, int]]]:
    """(name, layer, input (C, H, W)) of every convolution of the encoder and decoder."""
    enc, dec = ConvEncoder(depth), ConvDecoder(64, depth)
    convs = [m for m in enc.convs if isinstance(m, nn.Conv2d)]
    deconvs = [m for m in dec.deconvs if isinstance(m, nn.ConvTranspose2d)]
    shapes = []
    side = 64
    for i, m in enumerate(convs):
        shapes.append((f"encoder conv {i + 1}", m, (m.in_channels, side, side)))
        side = (side - m.kernel_size[0]) // m.stride[0] + 1
    side = 1
    for i, m in enumerate(deconvs):
        shapes.append((f"decoder deconv {i + 1}", m, (m.in_channels, side, side)))
        side = (side - 1) * m.stride[0] + m.kernel_size[0]
    return shapes


def time_layer(m: nn.Module, x: torch.Tensor, repeats: int, bf16: bool) -> tuple[float, int]:
    """Median seconds of forward + backward, and the forward's multiply-adds."""

    def step() -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            y = m(x)
        y.float().backward(torch.ones(y.shape))
        return y

    y = step()
    k = m.kernel_size[0] * m.kernel_size[1]
    # A convolution's multiply-adds: every output element reads C_in x k x k inputs; a transposed
    # one's: every input element writes C_out x k x k outputs.
    macs = y.numel() * m.in_channels * k if isinstance(m, nn.Conv2d) else x.numel() * m.out_channels * k
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return statistics.median(times), macs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=8, help="cnn_depth (CPU preset 8, paper 32)")
    parser.add_argument("--batch", type=int, default=512, help="frames per update (B x T)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--bf16", action="store_true", help="also time each layer under bfloat16 autocast")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    rows = []
    for name, m, shape in layers(args.depth):
        x = torch.randn(args.batch, *shape).contiguous(memory_format=torch.channels_last)
        x.requires_grad_(name != "encoder conv 1")  # the frames need no gradient
        secs, macs = time_layer(m, x, args.repeats, False)
        half = time_layer(m, x, args.repeats, True)[0] if args.bf16 else float("nan")
        rows.append((name, secs, 3 * 2 * macs / secs / 1e9, half))
    total = sum(r[1] for r in rows)
    print(f"depth {args.depth}, batch {args.batch}, one thread; forward + backward per layer")
    print("| layer | ms | share | GFLOP/s | bf16 ms |\n|---|---|---|---|---|")
    for name, secs, rate, half in rows:
        print(f"| {name} | {secs * 1e3:.1f} | {secs / total:.0%} | {rate:.1f} | {half * 1e3:.1f} |")
    print(f"| all | {total * 1e3:.1f} | 100% | | {sum(r[3] for r in rows) * 1e3:.1f} |")


if __name__ == "__main__":
    main()
