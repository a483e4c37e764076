"""A plain PyTorch DPN script as a user would write it: the baseline of the main job.

The package's model and loss, a hand-written loop over tensors indexed directly (no
DataLoader, no Accelerate), run with ``python``. Prints one JSON line: wall seconds, steps/s
per epoch, torch threads and mAP@all (ties="index") of the queries against the database.

    python benchmarks/plain_dpn.py --epochs 10 --widths 32 64 128
"""

import argparse
import json
import time

import torch

from pml_hashing.codes import binarize
from pml_hashing.data import load_protocol
from pml_hashing.evaluation import mean_average_precision
from pml_hashing.losses import PolarizationLoss
from pml_hashing.models import HashingModel

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--dataset", default="mnist-5k")
parser.add_argument("--epochs", type=int, default=10)
parser.add_argument("--batch-size", type=int, default=64)
parser.add_argument("--bits", type=int, default=64)
parser.add_argument("--widths", type=int, nargs="+", default=[32, 64, 128])
parser.add_argument("--lr", type=float, default=3e-3)
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()
torch.manual_seed(args.seed)
protocol = load_protocol(args.dataset, seed=args.seed)
images, labels = protocol.train.images, protocol.train.labels
model = HashingModel("hashing_cnn_small", args.bits, in_chans=1, widths=tuple(args.widths))
loss_func = PolarizationLoss(num_classes=protocol.num_classes, num_bits=args.bits, seed=args.seed)
optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
steps, rates = len(images) // args.batch_size, []
for _ in range(args.epochs):
    model.train()
    start, order = time.perf_counter(), torch.randperm(len(images))
    for s in range(steps):
        batch = order[s * args.batch_size : (s + 1) * args.batch_size]
        loss = loss_func(model(images[batch]), labels[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    rates.append(steps / (time.perf_counter() - start))
model.eval()
with torch.no_grad():
    q = binarize(model(protocol.query.images))
    db = binarize(torch.cat([model(x) for x in protocol.database.images.split(512)]))
mean_ap = mean_average_precision(q, protocol.query.labels, db, protocol.database.labels)
result = {"steps_per_second": rates, "map": mean_ap, "torch_threads": torch.get_num_threads()}
print(json.dumps(result))
