"""Transformer1D's attention: the nn.MultiheadAttention call against the fused path, side by side.

    python scripts/bench_attention.py                                   # configs/ptb_transformer.gin, 2 threads
    python scripts/bench_attention.py --bind 'Transformer1D.dropout = 0.0'

Copies of the config's model with the same weights, built as `fit` builds them (model, loss and
optimizer): one with every ``TransformerBlock.fused_attention`` turned off (``attention(x, x, x,
need_weights=False)``), one with it on (the default: :func:`heartlab.models.attention.mha_self_attention`),
and, where the config's attention has dropout, a third fused copy whose attention dropout is set to 0. The
third is not the baseline's training; it shows what the attention dropout costs, which torch's fused CPU
attention kernel does not implement.

Each copy runs heartlab's training step (``train.train_epoch``) over the same random beats (speed does not
depend on their values), and the first two run inference (``evaluation.predict``) over them. The rows are
timed round after round, interleaved, so that all see the same machine state; each figure is the median
over the rounds after one warm-up round. On a machine running other jobs the absolute numbers move with the
load: the ratios are the figures to read.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import gin
import torch

from heartlab import evaluation, train
from heartlab.config import load_config
from heartlab.data import BEAT_LENGTH, Split, get_dataset
from heartlab.errors import HeartlabError, report
from heartlab.models.baselines import TransformerBlock


def build(class_counts: list[int], fused: bool, attention_dropout: bool = True):
    """Model, loss and optimizer as `fit` builds them (seed 0), with the attention path ``fused``; without
    ``attention_dropout`` the attention modules' dropout is set to 0 (not the baseline's training)."""
    torch.manual_seed(0)
    net, loss_fn, optimizer = train.build_configured(class_counts)
    blocks = [m for m in net.modules() if isinstance(m, TransformerBlock)]
    if not blocks:
        raise HeartlabError(f"the config's model, {type(net).__name__}, has no TransformerBlock (use a Transformer1D config)")
    for block in blocks:
        block.fused_attention = fused
        if not attention_dropout:
            block.attention.dropout = 0.0
    return net, loss_fn, optimizer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", nargs="?", default="configs/ptb_transformer.gin", help="a Transformer1D experiment config")
    parser.add_argument("--bind", action="append", default=[], help="extra gin binding, repeatable")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--steps", type=int, default=3, help="training steps per timed window (default 3)")
    parser.add_argument("--rounds", type=int, default=5, help="timed windows per row, after one warm-up (default 5)")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    try:
        load_config(args.config, args.bind)
        batch_size = gin.query_parameter("fit.batch_size")
        dataset = get_dataset(gin.query_parameter("load_splits.dataset"))
        generator = torch.Generator().manual_seed(0)
        beats = args.steps * batch_size
        x = torch.rand(beats, BEAT_LENGTH, generator=generator)
        y = torch.arange(beats) % dataset.num_classes
        window = Split(x, y, rr=0.5 + torch.rand(beats, 4, generator=generator))
        counts = window.class_counts(dataset.num_classes).tolist()
        paths = {"nn.MultiheadAttention": build(counts, fused=False), "fused": build(counts, fused=True)}
        no_attention_dropout = build(counts, fused=True, attention_dropout=False)
    except HeartlabError as exc:
        return report(exc)

    reference, fused = (net for net, _, _ in paths.values())
    difference = (evaluation.predict(reference, window, 1024, False) - evaluation.predict(fused, window, 1024, False)).abs().max()

    rows = {}
    for name, (net, loss_fn, optimizer) in paths.items():
        order = torch.Generator().manual_seed(0)
        rows[f"train  {name}"] = lambda n=net, lf=loss_fn, o=optimizer, g=order: float(
            train.train_epoch(n, lf, o, None, window, batch_size, g, False)
        )
        rows[f"infer  {name}"] = lambda n=net: evaluation.predict(n, window, batch_size, False)
    if no_attention_dropout[0].blocks[0].attention.dropout != paths["fused"][0].blocks[0].attention.dropout:
        net, loss_fn, optimizer = no_attention_dropout
        order = torch.Generator().manual_seed(0)
        rows["train  fused, attention dropout 0"] = lambda: float(
            train.train_epoch(net, loss_fn, optimizer, None, window, batch_size, order, False)
        )
    timings: dict[str, list[float]] = {name: [] for name in rows}
    for round_ in range(args.rounds + 1):  # round 0 warms up
        for name, run in rows.items():
            started = time.perf_counter()
            run()
            if round_:
                timings[name].append(time.perf_counter() - started)
    speed = {name: beats / statistics.median(times) for name, times in timings.items()}

    model = type(reference).__name__
    dropout = gin.query_parameter("Transformer1D.dropout") if model == "Transformer1D" else "?"
    bindings = "".join(f" --bind '{b}'" for b in args.bind)
    print(f"{args.config}{bindings}: {model} (dropout {dropout}), batch {batch_size}, {args.threads} thread(s), fp32")
    print(f"{args.rounds} rounds of {args.steps} steps ({beats} random beats), median; max |logit difference| {difference:.2e}")
    width = max(map(len, speed)) + 2
    print(f"{'row':<{width}}{'beats/s':>10}")
    for name, value in speed.items():
        print(f"{name:<{width}}{value:>10,.0f}")
    for kind in ("train", "infer"):
        ratio = speed[f"{kind}  fused"] / speed[f"{kind}  nn.MultiheadAttention"]
        print(f"{kind}: fused / nn.MultiheadAttention = {ratio:.2f}x")
    if "train  fused, attention dropout 0" in speed:
        ratio = speed["train  fused, attention dropout 0"] / speed["train  nn.MultiheadAttention"]
        print(f"train: fused with attention dropout 0 (not the baseline's training) / nn.MultiheadAttention = {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
