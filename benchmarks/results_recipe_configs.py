"""Write recipes/configs/*.yaml: one training config per cell of the DPN paper's Table 3,
CSQ's and OrthoHash's published cells, plus bundled-data defaults.

Each Table 3 config follows the paper's protocol (data split, code length, R of mAP@R) and
the defaults of the authors' public re-implementation (the DPN release by kamwoh on GitHub,
``main.py``: SGD with momentum 0.9, lr 1e-4, weight decay 5e-4, batch 256, 200 epochs, an
ImageNet-pretrained AlexNet). Two deliberate differences, written into every file:

* timm has no AlexNet: the backbone is ``resnet18`` (pass its local ImageNet weights with
  ``pretrained:``; nothing is downloaded), with ``backbone_lr_multiplier: 0.1``;
* the package's schedulers are ``cosine`` or ``none``; the authors step the lr down by 10x
  at half the epochs.

DPN-T and DPN-A-T are not separate runs: they are the ``map_ternary`` of the DPN and DPN-A
runs. The paper's number for a cell is in each file's header comment.

    python benchmarks/results_recipe_configs.py            # (re)write recipes/configs/
    python benchmarks/results_recipe_configs.py --check    # fail if a file is out of date
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO / "recipes" / "configs"
BITS = (16, 32, 64, 128)

# DPN paper, Table 3 (mAP): CIFAR10 mAP@all, NUS-WIDE mAP@5K, ImageNet100 mAP@1K; None = "-".
PAPER_TABLE3 = {
    "cifar10-1": {
        "DPN": (0.774, 0.803, 0.812, 0.808),
        "DPN-A": (0.801, 0.821, 0.814, 0.813),
        "DPN-T": (0.789, 0.818, 0.829, 0.823),
        "DPN-A-T": (0.825, 0.838, 0.830, 0.829),
    },
    "nuswide-21": {
        "DPN": (0.810, 0.832, 0.839, 0.840),
        "DPN-A": None,
        "DPN-T": (0.847, 0.859, 0.863, 0.862),
        "DPN-A-T": None,
    },
    "imagenet-100": {
        "DPN": (0.606, 0.693, 0.729, 0.732),
        "DPN-A": (0.606, 0.687, 0.722, 0.727),
        "DPN-T": (0.684, 0.740, 0.756, 0.756),
        "DPN-A-T": (0.675, 0.734, 0.751, 0.755),
    },
}
ROOTS = {"cifar10-1": "data/cifar10", "nuswide-21": "data/nuswide", "imagenet-100": "data/imagenet"}
R_OF = {"cifar10-1": "all", "nuswide-21": 5000, "imagenet-100": 1000}
PROTOCOL_NOTE = {
    "cifar10-1": "1,000 queries (100/class), 59,000 database, 5,000 train (500/class)",
    "nuswide-21": "2,100 queries, 10,500 train, the rest database (HashNet list files)",
    "imagenet-100": "5,000 queries (val), 13,000 train, ~128K database (HashNet list files)",
}
PAPER_RECIPE = {
    "backbone": "resnet18",
    "pretrained": "weights/resnet18_imagenet.pth",
    "backbone_lr_multiplier": 0.1,
    "optimizer": "sgd",
    "lr": 1.0e-4,
    "weight_decay": 5.0e-4,
    "batch_size": 256,
    "epochs": 200,
    "scheduler": "cosine",
    "margin": 1.0,
    "p": 0.5,
    "num_workers": 4,
    "ties": "index",
}


# DPN-A: the package's guarded schedule, written out so that a config says what it runs.
DPN_A_SCHEDULE = {"warmup_epochs": 2, "update_every": 3, "min_distance_floor": "initial"}
DPN_A_NOTE = [
    "DPN-A schedule: NOT the authors' default, which never updates the targets",
    "(--centroid-update-time 0 in their main.py). These are the package's defaults,",
    "measured on digits and mnist-5k (docs/results.md): votes from epoch 3 on, an update",
    "every 3 epochs, refused whole if it would bring the closest pair of targets below the",
    "initial codebook's. The paper's Algorithm 1 as written: warmup_epochs 0,",
    "update_every 1, min_distance_floor 0 (no guard).",
]


def table3_configs() -> dict[str, tuple[str, dict]]:
    """``file name -> (header comment, config dict)`` for every reported Table 3 cell."""
    out = {}
    for dataset, rows in PAPER_TABLE3.items():
        for variant, miner, ternary in (
            ("dpn", "random", "DPN-T"),
            ("dpn-a", "adaptive", "DPN-A-T"),
        ):
            binary = "DPN" if variant == "dpn" else "DPN-A"
            if rows[binary] is None:
                continue
            for i, bits in enumerate(BITS):
                config = {
                    "name": f"{dataset}_{variant}_{bits}",
                    "dataset": dataset,
                    "root": ROOTS[dataset],
                    "method": "dpn",
                    "bits": bits,
                    "target_miner": miner,
                    **PAPER_RECIPE,
                }
                if miner == "adaptive":
                    config.update(DPN_A_SCHEDULE)
                paper = f"{binary} {rows[binary][i]:.3f}"
                if rows[ternary] is not None:
                    paper += f", {ternary} {rows[ternary][i]:.3f} (map_ternary of this run)"
                header = [
                    f"DPN paper Table 3, {dataset}, {bits} bits, mAP@{R_OF[dataset]}: {paper}.",
                    f"Protocol: {PROTOCOL_NOTE[dataset]}.",
                    "Recipe: the authors' re-implementation defaults (SGD 0.9, lr 1e-4, wd 5e-4,",
                    "batch 256, 200 epochs), except: resnet18 for AlexNet (timm has none), a",
                    "cosine schedule for their step schedule. Put local ImageNet weights at",
                    "`pretrained` (nothing is downloaded). Needs the data under `root` and a GPU.",
                    f"accelerate launch recipes/train.py --config recipes/configs/{dataset}_"
                    f"{variant}_{bits}.yaml",
                ]
                if miner == "adaptive":
                    header[-1:-1] = DPN_A_NOTE  # before the command line
                out[f"{dataset}_{variant}_{bits}.yaml"] = (header, config)
    return out


def bundled_configs() -> dict[str, tuple[str, dict]]:
    """Bundled-data defaults: what the results page's digits runs and the main job use."""
    small = {"backbone": "hashing_cnn_small", "scheduler": "cosine", "optimizer": "adamw"}
    out = {
        "mnist-5k_dpn_64.yaml": (
            [
                "DPN, 64 bits, bundled MNIST-5k (the main job): 1,000 queries, 4,000 database =",
                "training set, mAP@all. About 20 s on two CPU cores.",
                "accelerate launch recipes/train.py --config recipes/configs/mnist-5k_dpn_64.yaml",
            ],
            {
                "name": "mnist-5k_dpn_64",
                "dataset": "mnist-5k",
                "method": "dpn",
                "bits": 64,
                "target_miner": "random",
                "margin": 1.0,
                "epochs": 10,
                "batch_size": 64,
                "lr": 1.5e-2,
                **small,
            },
        )
    }
    for variant, miner in (("dpn", "random"), ("dpn-a", "adaptive")):
        for bits in (16, 32, 64):
            out[f"digits_{variant}_{bits}.yaml"] = (
                [
                    f"{variant.upper()}, {bits} bits, bundled digits (scikit-learn, 8x8): 1,000",
                    "queries, 797 database = training set, mAP@all. The setting of",
                    "docs/results.md (benchmarks/results_dpn.py trains the same model in its own",
                    "loop); about 20 s of training on a CPU.",
                    f"accelerate launch recipes/train.py --config recipes/configs/digits_{variant}"
                    f"_{bits}.yaml",
                ],
                {
                    "name": f"digits_{variant}_{bits}",
                    "dataset": "digits",
                    "method": "dpn",
                    "bits": bits,
                    "target_miner": miner,
                    "margin": 1.0,
                    "epochs": 10,
                    "batch_size": 64,
                    "lr": 3.0e-3,
                    "backbone_kwargs": {"widths": [16, 32, 64]},
                    **small,
                    **(DPN_A_SCHEDULE if miner == "adaptive" else {}),
                },
            )
            if miner == "adaptive":
                out[f"digits_{variant}_{bits}.yaml"][0][-1:-1] = DPN_A_NOTE
    out["digits_sh-bdnn_16.yaml"] = (
        [
            "SH-BDNN, 16 bits, bundled digits: the authors' weights l1..l5 (method defaults).",
            "accelerate launch recipes/train.py --config recipes/configs/digits_sh-bdnn_16.yaml",
        ],
        {
            "name": "digits_sh-bdnn_16",
            "dataset": "digits",
            "method": "sh-bdnn",
            "bits": 16,
            "epochs": 30,
            "batch_size": 64,
            "lr": 1.0e-3,
            "backbone_kwargs": {"widths": [16, 32, 64]},
            **small,
        },
    )
    return out


# Published numbers of the target-code family (mAP at 16 / 32 / 64 bits).
# CSQ: yuanli2333/Hadamard-Matrix-for-hashing README (ResNet-50): ImageNet-100 mAP@1000,
# NUS-WIDE mAP@5000. OrthoHash: supplementary Table 4 (AlexNet), ImageNet-100 mAP@1000.
FAMILY_PUBLISHED = {
    ("csq", "imagenet-100"): (0.851, 0.865, 0.873),
    ("csq", "nuswide-21"): (0.810, 0.825, 0.839),
    ("orthohash", "imagenet-100"): (0.608, 0.679, 0.711),
}
FAMILY_BITS = (16, 32, 64)
# CSQ's README trains ResNet-50 with train.py's defaults: Adam lr 1e-3, backbone x0.01
# (multi_lr; 0.05 for NUS-WIDE), batch 64, 90 epochs with the lr times 0.7 every 10,
# lambda1 0 (no pairwise term), lambda2 0.05 (the quantization weight).
CSQ_RECIPE = {
    "backbone": "resnet50",
    "pretrained": "weights/resnet50_imagenet.pth",
    "optimizer": "adamw",
    "weight_decay": 0.0,
    "lr": 1.0e-3,
    "batch_size": 64,
    "epochs": 90,
    "scheduler": "cosine",
    "target_miner": "hash-center",
    "quantization_weight": 0.05,
    "num_workers": 4,
    "ties": "index",
}
# OrthoHash's main.py defaults: Adam lr 1e-4, weight decay 5e-4, batch 256, 100 epochs (lr
# x0.1 at 80%), backbone lr x0.1 (README), s 8, m 0.2, Bernoulli codebook, AlexNet with a
# bias-free hash layer and BatchNorm1d.
ORTHOHASH_RECIPE = {
    "backbone": "resnet18",
    "pretrained": "weights/resnet18_imagenet.pth",
    "backbone_lr_multiplier": 0.1,
    "optimizer": "adamw",
    "weight_decay": 5.0e-4,
    "lr": 1.0e-4,
    "batch_size": 256,
    "epochs": 100,
    "scheduler": "cosine",
    "target_miner": "random",
    "p": 0.5,
    "scale": 8.0,
    "cosine_margin": 0.2,
    "hash_batchnorm": True,
    "num_workers": 4,
    "ties": "index",
}


def family_configs() -> dict[str, tuple[str, dict]]:
    """CSQ and OrthoHash at their published cells: ``file name -> (header, config)``."""
    out = {}
    for (method, dataset), numbers in FAMILY_PUBLISHED.items():
        for bits, published in zip(FAMILY_BITS, numbers, strict=True):
            name = f"{dataset}_{method}_{bits}"
            if method == "csq":
                recipe = dict(CSQ_RECIPE)
                recipe["backbone_lr_multiplier"] = 0.05 if dataset == "nuswide-21" else 0.01
                source = "CSQ README (yuanli2333/Hadamard-Matrix-for-hashing), ResNet-50"
                differences = [
                    "Recipe: the authors' train.py defaults (Adam lr 1e-3, backbone lr x"
                    f"{recipe['backbone_lr_multiplier']:g}, batch 64,",
                    "90 epochs, lambda2 0.05 as the quantization weight, lambda1 0), except:",
                    "AdamW with weight decay 0 for Adam, a cosine schedule for their x0.7",
                    "every 10 epochs. Hash centers: hash-center (their Hadamard rows).",
                ]
            else:
                recipe = dict(ORTHOHASH_RECIPE)
                source = "OrthoHash supplementary Table 4, AlexNet"
                differences = [
                    "Recipe: the authors' main.py defaults (Adam lr 1e-4, wd 5e-4, batch 256,",
                    "100 epochs, backbone lr x0.1, s 8, m 0.2, Bernoulli codebook, batch norm",
                    "on a bias-free hash layer), except: resnet18 for AlexNet (timm has none),",
                    "AdamW for Adam, a cosine schedule for their x0.1 step at 80%.",
                ]
            header = [
                f"{source}: {dataset}, {bits} bits, mAP@{R_OF[dataset]}: {published:.3f}.",
                f"Protocol: {PROTOCOL_NOTE[dataset]}.",
                *differences,
                "Put local ImageNet weights at `pretrained` (nothing is downloaded). Needs the",
                "data under `root` and a GPU.",
                f"accelerate launch recipes/train.py --config recipes/configs/{name}.yaml",
            ]
            config = {
                "name": name,
                "dataset": dataset,
                "root": ROOTS[dataset],
                "method": method,
                "bits": bits,
                **recipe,
            }
            out[f"{name}.yaml"] = (header, config)
    return out


def render(header: list[str], config: dict) -> str:
    comment = "".join(f"# {line}\n" for line in header)
    return comment + yaml.safe_dump(config, sort_keys=False)


def all_configs() -> dict[str, str]:
    """``file name -> YAML text`` of every config this script owns."""
    configs = {**table3_configs(), **bundled_configs(), **family_configs()}
    return {name: render(header, config) for name, (header, config) in configs.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=CONFIG_DIR)
    parser.add_argument("--check", action="store_true", help="fail if a file differs")
    args = parser.parse_args(argv)
    stale = []
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in all_configs().items():
        path = args.out / name
        if args.check:
            if not path.is_file() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    if stale:
        print(f"out of date: {stale}; rerun python benchmarks/results_recipe_configs.py")
        return 1
    print(f"{'checked' if args.check else 'wrote'} {len(all_configs())} configs in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
