"""Per-component parameter table of a model (cf. METHODS_SPEC §6.4).

``python -m trainers.models.summary --arch resnet34 --dataset nyuv2`` prints conv weights (the quantity
AdapMTL's sparsity counts), conv biases and BN parameters per component. The model is built on the ``meta``
device, so the full-width model costs neither memory nor init time.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from trainers.models.multitask import ARCHS, build_model

__all__ = ["DATASET_TASKS", "format_table", "main", "parameter_table"]

#: Task -> output channels as in the official code (METHODS_SPEC §1.1). Kept here until the data registry
#: (trainers.data) is the single source.
DATASET_TASKS: dict[str, dict[str, int]] = {
    "nyuv2": {"segment_semantic": 40, "normal": 3, "depth_zbuffer": 1},
    "taskonomy": {
        "segment_semantic": 17,
        "normal": 3,
        "depth_zbuffer": 1,
        "keypoints2d": 1,
        "edge_texture": 1,
    },
}

COLUMNS = ("component", "convs", "conv_weights", "biases", "bn_params", "total")
_NORM_TYPES = (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)


def _count(module: nn.Module) -> dict[str, int]:
    convs = weights = biases = bn = 0
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            convs += 1
            weights += m.weight.numel()
            biases += 0 if m.bias is None else m.bias.numel()
        elif isinstance(m, _NORM_TYPES):
            bn += sum(p.numel() for p in m.parameters(recurse=False))
    return {"convs": convs, "conv_weights": weights, "biases": biases, "bn_params": bn,
            "total": weights + biases + bn}


def parameter_table(arch: str, task_channels: Mapping[str, int], width: float = 1.0) -> list[dict]:
    """Rows ``{component, convs, conv_weights, biases, bn_params, total}``: backbone, each head, then
    ``heads`` (all heads) and ``total``."""
    with torch.device("meta"):
        model = build_model(arch, task_channels, width=width)
    rows = [{"component": "backbone", **_count(model.backbone)}]
    rows += [{"component": f"head/{t}", **_count(h)} for t, h in model.heads.items()]
    for label, subset in (("heads", rows[1:]), ("total", rows[:])):
        rows.append({"component": label, **{k: sum(r[k] for r in subset) for k in COLUMNS[1:]}})
    return rows


def format_table(rows: Sequence[Mapping[str, object]]) -> str:
    """Plain-text table with thousands separators (numbers right-aligned)."""
    cells = [list(COLUMNS)] + [
        [str(r["component"])] + [f"{r[k]:,}" for k in COLUMNS[1:]] for r in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS))]
    lines = []
    for j, row in enumerate(cells):
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainers.models.summary", description=__doc__.split("\n")[0])
    parser.add_argument("--arch", choices=ARCHS, default="resnet34")
    parser.add_argument("--dataset", choices=sorted(DATASET_TASKS), default="nyuv2")
    parser.add_argument("--width", type=float, default=1.0)
    args = parser.parse_args(argv)
    rows = parameter_table(args.arch, DATASET_TASKS[args.dataset], width=args.width)
    print(f"{args.arch} / {args.dataset} (width {args.width:g})")
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
