"""Training throughput of an experiment config: heartlab's training step against a bare PyTorch loop.

    python scripts/bench_train.py configs/arrhythmia_resnet1d.gin --json bench.json
    python scripts/bench_train.py configs/arrhythmia_*.gin      # one row per model default, then a summary

Measured in one process, interleaved round by round so that both see the same machine state:
  trainer  heartlab.train.train_epoch (the step used by `heartlab train` and by every Ray trial)
  bare     a plain PyTorch loop: index a batch, forward, cross-entropy, backward, step
each in fp32 and under bf16 autocast (bf16 only where the CPU has it natively, unless --precision both),
on the config's model, batch size, loss weights and data (the
config's training file when it exists, otherwise random beats of the same shape: speed does not depend on
the values). For a ResNet1D the bare loop also runs with plain F.conv1d layers (backend='conv1d'), the
reference for the conv2d-backed layers. Throughput is the median over timed windows after warm-up.
MACs per beat (forward + backward) come from torch's FLOP counter; the denominator is the machine's
measured fp32 GEMM rate (a large square matmul) on the same threads.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import gin
import torch
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

from heartlab import evaluation, train
from heartlab.build import native_bf16
from heartlab.config import load_config
from heartlab.data import BEAT_LENGTH, Split, get_dataset, load_splits
from heartlab.errors import HeartlabError, report


def gemm_gmacs(size: int = 4096, dtype: torch.dtype = torch.float32, repeats: int = 5) -> float:
    """Multiply-accumulates per second (1e9) of a large square matmul."""
    a = torch.randn(size, size).to(dtype)
    b = torch.randn(size, size).to(dtype)
    a @ b
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - started)
    return size**3 / statistics.median(times) / 1e9


def training_data(num_classes: int, beats: int) -> tuple[Split, str]:
    """The config's training split, or random beats when its files are absent."""
    try:
        splits = load_splits()
        return splits.train, f"{len(splits.train)} training beats of {splits.dataset.name}"
    except HeartlabError as exc:
        generator = torch.Generator().manual_seed(0)
        x = torch.rand(beats, BEAT_LENGTH, generator=generator)
        y = torch.randint(0, num_classes, (beats,), generator=generator)
        rr = 0.5 + torch.rand(beats, 4, generator=generator)  # seconds, for models with rr_features
        return Split(x, y, rr=rr), f"{beats} random beats ({str(exc).splitlines()[0]})"


def build(class_counts: list[int], **model_overrides):
    """Model, loss and optimizer exactly as `fit` builds them from the loaded config, seeded alike."""
    torch.manual_seed(0)
    return train.build_configured(class_counts, **model_overrides)


def macs_per_beat(net, loss_fn, split: Split, batch_size: int) -> float:
    """Forward + backward multiply-accumulates per beat of one training step."""
    inputs = evaluation.model_inputs(net, split, slice(0, batch_size))
    net.train()
    with FlopCounterMode(display=False) as counter:
        loss_fn(net(*inputs), split.y[:batch_size]).backward()
    net.zero_grad(set_to_none=True)
    return counter.get_total_flops() / 2 / inputs[0].shape[0]


def trainer_window(net, loss_fn, optimizer, window: Split, batch_size: int, bf16: bool) -> Callable[[], None]:
    generator = torch.Generator().manual_seed(0)
    return lambda: float(train.train_epoch(net, loss_fn, optimizer, None, window, batch_size, generator, bf16))


def bare_window(net, loss_fn, optimizer, window: Split, batch_size: int, bf16: bool) -> Callable[[], None]:
    weight = getattr(loss_fn, "weight", None)

    def run() -> None:
        net.train()
        order = torch.randperm(len(window))
        for start in range(0, len(window), batch_size):
            index = order[start : start + batch_size]
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                logits = net(*evaluation.model_inputs(net, window, index))
            loss = F.cross_entropy(logits.float(), window.y[index], weight=weight)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        loss.item()

    return run


def bench_config(config: str, args: argparse.Namespace, precisions: tuple[str, ...], peak: float, peak_bf16: float) -> dict:
    """The figures of one config (printed as they are measured)."""
    load_config(config, args.bind)
    batch_size = gin.query_parameter("fit.batch_size")
    dataset = get_dataset(gin.query_parameter("load_splits.dataset"))
    split, source = training_data(dataset.num_classes, 20_000)
    counts = split.class_counts(dataset.num_classes).tolist()
    generator = torch.Generator().manual_seed(1)
    window_index = torch.randperm(len(split), generator=generator)[: args.steps * batch_size]
    window = split.subset(window_index.numpy())
    window_beats = len(window)  # fewer than steps * batch_size when the training split is small

    net, loss_fn, optimizer = build(counts)
    model_name = type(net).__name__
    rows: dict[str, tuple[Callable[[], None], float]] = {}
    macs = macs_per_beat(net, loss_fn, window, batch_size)
    modes = [(precision, precision == "bf16") for precision in precisions]
    for precision, bf16 in modes:
        for kind, make in (("trainer", trainer_window), ("bare", bare_window)):
            rows[f"{kind} {precision}"] = (make(*build(counts), window, batch_size, bf16), macs)
    if model_name == "ResNet1D":
        reference = build(counts, backend="conv1d")
        reference_macs = macs_per_beat(reference[0], reference[1], window, batch_size)
        for precision, bf16 in modes:
            rows[f"bare conv1d {precision}"] = (bare_window(*reference, window, batch_size, bf16), reference_macs)

    timings: dict[str, list[float]] = {name: [] for name in rows}
    for round_ in range(args.rounds + 1):  # round 0 warms up
        for name, (run, _) in rows.items():
            started = time.perf_counter()
            run()
            if round_:
                timings[name].append(time.perf_counter() - started)

    table = []
    for name, (_, row_macs) in rows.items():
        beats_per_s = window_beats / statistics.median(timings[name])
        gmacs = beats_per_s * row_macs / 1e9
        table.append({"row": name, "beats_per_s": beats_per_s, "gmac_per_s": gmacs, "pct_fp32_peak": 100 * gmacs / peak})
    speed = {row["row"]: row["beats_per_s"] for row in table}
    result = {
        "config": str(config),
        "bindings": args.bind,
        "model": model_name,
        "data": source,
        "threads": args.threads,
        "batch_size": batch_size,
        "macs_per_beat_train": macs,
        "gemm_fp32_gmac_per_s": peak,
        "gemm_bf16_gmac_per_s": peak_bf16,
        "rows": table,
    }
    for precision in precisions:
        result[f"ratio_trainer_bare_{precision}"] = speed[f"trainer {precision}"] / speed[f"bare {precision}"]
    if len(precisions) == 2:
        result["bf16_speedup"] = speed["trainer bf16"] / speed["trainer fp32"]
    if "bare conv1d fp32" in speed:
        for precision in precisions:
            result[f"ratio_trainer_{precision}_vs_bare_conv1d_fp32"] = speed[f"trainer {precision}"] / speed["bare conv1d fp32"]

    if args.epoch:
        for precision, bf16 in modes:
            net_e, loss_e, opt_e = build(counts)
            generator = torch.Generator().manual_seed(0)
            for _ in range(2):  # the first epoch warms up; the second is timed
                started = time.perf_counter()
                float(train.train_epoch(net_e, loss_e, opt_e, None, split, batch_size, generator, bf16))
                seconds = time.perf_counter() - started
            result[f"epoch_seconds_{precision}"] = seconds
            result[f"epoch_beats_per_s_{precision}"] = len(split) / seconds

    print(f"\n{config}: {model_name}, batch {batch_size}, {args.threads} threads, {source}")
    print(f"MACs per beat (forward + backward): {macs / 1e6:.2f} M;  fp32 GEMM peak {peak:.1f} GMAC/s, bf16 {peak_bf16:.1f}")
    print(f"{'row':<20}{'beats/s':>10}{'GMAC/s':>9}{'% fp32 peak':>13}")
    for row in table:
        print(f"{row['row']:<20}{row['beats_per_s']:>10,.0f}{row['gmac_per_s']:>9.1f}{row['pct_fp32_peak']:>12.1f}%")
    for key, value in result.items():
        if key.startswith(("ratio", "bf16_speedup", "epoch_")):
            print(f"{key}: {value:.3f}")
    return result


def summary(results: list[dict], precisions: tuple[str, ...]) -> str:
    """One line per config: trainer beats/s, trainer/bare and % of the fp32 GEMM peak, per precision."""
    header = f"{'model':<19}{'train MACs/beat':>16}"
    for precision in precisions:
        header += f"{'beats/s ' + precision:>16}{'trainer/bare':>14}{'% peak':>8}"
    lines = [header]
    for result in results:
        rows = {row["row"]: row for row in result["rows"]}
        line = f"{result['model']:<19}{result['macs_per_beat_train'] / 1e6:>14.2f} M"
        for precision in precisions:
            trainer = rows[f"trainer {precision}"]
            ratio = result[f"ratio_trainer_bare_{precision}"]
            line += f"{trainer['beats_per_s']:>16,.0f}{ratio:>14.3f}{trainer['pct_fp32_peak']:>7.1f}%"
        lines.append(line)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("configs", nargs="+", metavar="CONFIG", help="experiment config(s), e.g. configs/arrhythmia_resnet1d.gin")
    parser.add_argument("--bind", action="append", default=[], help="extra gin binding for every config, repeatable")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--steps", type=int, default=12, help="training steps per timed window")
    parser.add_argument("--rounds", type=int, default=5, help="timed windows per row (after one warm-up)")
    parser.add_argument(
        "--precision", choices=("auto", "fp32", "both"), default="auto",
        help="fp32 only, or fp32 and bf16; auto (default): bf16 too only on a CPU with native bf16 (without it "
        "autocast emulates bf16 several times slower, which says nothing about the trainer)",
    )
    parser.add_argument("--epoch", action="store_true", help="also time a full trainer epoch per precision after a warm-up epoch")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file (a list with several configs)")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    native = native_bf16()
    both = args.precision == "both" or (args.precision == "auto" and native)
    precisions = ("fp32", "bf16") if both else ("fp32",)
    if not both and args.precision == "auto":
        print("bf16 rows left out: this CPU has no native bf16 (pass --precision both to time the emulation)")
    peak = gemm_gmacs()
    # Without native bf16 (AVX512-BF16 / AMX) a 4096^3 bf16 matmul is emulated and takes minutes: not measured.
    peak_bf16 = gemm_gmacs(dtype=torch.bfloat16) if native else float("nan")
    results = []
    try:
        for config in args.configs:
            results.append(bench_config(config, args, precisions, peak, peak_bf16))
    except HeartlabError as exc:
        return report(exc)
    if len(results) > 1:
        print("\n" + summary(results, precisions))
    if args.json:
        args.json.write_text(json.dumps(results[0] if len(results) == 1 else results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
