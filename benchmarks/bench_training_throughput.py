"""Training throughput: the library's Accelerate loop against a plain PyTorch loop.

Same model (``HashingModel``), same data (bundled MNIST-5k), same global batch, same
optimizer, timed in the same run. Prints images per second (median over epochs after the
first, which warms up), their ratio, and the polarization loss's share of a training step.

    python benchmarks/bench_training_throughput.py            # 4 epochs each, 3 repeats
    python benchmarks/bench_training_throughput.py --quick    # a smoke run
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from pml_hashing.data import load_protocol
from pml_hashing.losses import PolarizationLoss
from pml_hashing.models import HashingModel
from pml_hashing.training import run_experiment


def plain_loop(dataset: str, bits: int, widths, batch_size: int, epochs: int, seed: int):
    """The loop a user would write by hand: DataLoader, forward, loss, backward, step."""
    torch.manual_seed(seed)
    protocol = load_protocol(dataset, seed=seed)
    model = HashingModel("hashing_cnn_small", bits, in_chans=1, widths=widths)
    loss_func = PolarizationLoss(num_classes=protocol.num_classes, num_bits=bits, seed=seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    loader = torch.utils.data.DataLoader(
        protocol.train, batch_size=batch_size, shuffle=True, drop_last=True
    )
    rates = []
    for _ in range(epochs):
        model.train()
        start, seen = time.perf_counter(), 0
        for images, labels in loader:
            loss = loss_func(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            seen += len(images)
        rates.append(seen / (time.perf_counter() - start))
    return rates


def library_loop(dataset: str, bits: int, widths, batch_size: int, epochs: int, seed: int):
    with tempfile.TemporaryDirectory() as tmp:
        metrics = run_experiment(
            dict(
                dataset=dataset,
                bits=bits,
                backbone_kwargs={"widths": list(widths)},
                batch_size=batch_size,
                epochs=epochs,
                seed=seed,
                output_dir=tmp,
                checkpoint_every=0,
                log_with="none",
                progress=True,
            )
        )
    return [len(e["losses"]) * batch_size / e["seconds"] for e in metrics["history"]]


def loss_share(bits: int, widths, batch_size: int, repeats: int) -> tuple[float, float]:
    """Median seconds of (model forward+backward) and of (loss forward+backward) on a batch."""
    model = HashingModel("hashing_cnn_small", bits, in_chans=1, widths=widths)
    loss_func = PolarizationLoss(num_classes=10, num_bits=bits)
    images = torch.randn(batch_size, 1, 28, 28)
    labels = torch.randint(0, 10, (batch_size,))
    step_times, loss_times = [], []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        outputs = model(images)
        loss = loss_func(outputs, labels)
        loss.backward()
        step_times.append(time.perf_counter() - start)
        detached = outputs.detach().requires_grad_()
        start = time.perf_counter()
        loss_func(detached, labels).backward()
        loss_times.append(time.perf_counter() - start)
    return statistics.median(step_times[1:]), statistics.median(loss_times[1:])


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    parser.add_argument("--dataset", default="mnist-5k")
    parser.add_argument("--bits", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    widths = (32, 64, 128)
    if args.quick:
        args.dataset, args.epochs, args.repeats, widths = "digits", 2, 1, (8, 16)
    plain, library = [], []
    for repeat in range(args.repeats):  # interleaved, so drift hits both alike
        plain += plain_loop(args.dataset, args.bits, widths, args.batch_size, args.epochs, repeat)[
            1:
        ]
        library += library_loop(
            args.dataset, args.bits, widths, args.batch_size, args.epochs, repeat
        )[1:]
    plain_rate, library_rate = statistics.median(plain), statistics.median(library)
    step, loss = loss_share(args.bits, widths, args.batch_size, repeats=5 if args.quick else 30)
    rows = [
        {"loop": "plain PyTorch", "images/s": plain_rate, "ratio": 1.0},
        {
            "loop": "pml-hashing (Accelerate)",
            "images/s": library_rate,
            "ratio": library_rate / plain_rate,
        },
    ]
    print(
        f"{args.dataset}, {args.bits} bits, batch {args.batch_size}, widths {widths}, "
        f"torch threads {torch.get_num_threads()}; median over {len(plain)} epochs each"
    )
    print(f"{'loop':<28}{'images/s':>12}{'ratio':>10}")
    for row in rows:
        print(f"{row['loop']:<28}{row['images/s']:>12.0f}{row['ratio']:>10.3f}")
    print(
        f"polarization loss share of a training step (forward+backward): {loss / step:.2%} "
        f"({loss * 1e3:.2f} ms of {step * 1e3:.2f} ms)"
    )
    return rows


if __name__ == "__main__":
    main()
