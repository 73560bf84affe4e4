"""Display names of tasks, components, metrics, methods, architectures and datasets: one mapping for tables,
figures and the terminal.

Why one module: a paper's table says "Depth" and its figure's legend must not say ``head/depth_zbuffer``;
when the names live next to each renderer they drift apart. Registry names (``depth_zbuffer``,
``head/<task>``, ``train/weight/<task>``) stay what the MLflow schema stores (DESIGN §3.6); only what a
reader sees goes through here. Method names come from the registry's metadata
(:mod:`results.method_registry`), with the defaults below for methods it does not know. Unknown names are
shown readably (underscores as spaces), never rejected: runs tracked elsewhere may carry new tasks.
"""

from __future__ import annotations

from results import schema as S

TASK_LABELS: dict[str, tuple[str, str]] = {  # name → (long, short head label)
    "segment_semantic": ("Semantic Seg.", "S.S."),
    "normal": ("Surface Normal", "S.N."),
    "depth_zbuffer": ("Depth", "D.E."),
    "keypoints2d": ("Keypoints", "K.P."),
    "edge_texture": ("Edges", "E.T."),
}
METRIC_LABELS: dict[str, str] = {
    "miou": "mIoU", "pixel_acc": "Acc.", "angle_mean": "Mean", "angle_median": "Med.",
    "within_11.25": "11.25°", "within_22.5": "22.5°", "within_30": "30°", "within_45": "45°",
    "abs_err": "Abs.", "rel_err": "Rel.", "delta_1": "1.25", "delta_2": "1.25²", "delta_3": "1.25³",
    "cosine_similarity": "Cos. sim.", "err": "Err.", "key_err": "Err.", "edge_err": "Err.", "rmse": "RMSE",
}
ARCH_LABELS: dict[str, str] = {"resnet34": "DeepLab-ResNet34", "mobilenetv2": "MobileNetV2"}
DATASET_LABELS: dict[str, str] = {"nyuv2": "NYUv2", "taskonomy": "Tiny-Taskonomy",
                                  "synthetic_scenes": "synthetic scenes"}
#: display names of the built-in methods when the registry cannot be asked
METHOD_LABELS: dict[str, str] = {"dense": "Dense", "adapmtl": "AdapMTL", "snip": "SNIP", "lth": "LTH",
                                 "imp": "IMP", "disparse": "DiSparse"}


def _readable(name: str) -> str:
    return str(name).replace("_", " ")


def task_name(task: str) -> str:
    """``depth_zbuffer`` → ``Depth``."""
    return TASK_LABELS.get(task, (_readable(task), task))[0]


def task_short(task: str) -> str:
    """``depth_zbuffer`` → ``D.E.`` (the paper's short head labels)."""
    return TASK_LABELS.get(task, (task, task))[1]


def component_name(component: str) -> str:
    """``backbone`` → ``Backbone``, ``head/depth_zbuffer`` → ``Depth head``, ``overall`` → ``Overall``."""
    if component == S.BACKBONE:
        return "Backbone"
    if component == S.OVERALL:
        return "Overall"
    if component.startswith(S.HEAD_PREFIX):
        return f"{task_name(component[len(S.HEAD_PREFIX):])} head"
    return _readable(component)


def metric_name(metric: str) -> str:
    """A task metric: ``abs_err`` → ``Abs.``."""
    return METRIC_LABELS.get(metric, _readable(metric))


def series_name(key: str) -> str:
    """A logged MLflow key as a legend/axis entry: ``sparsity/head/normal`` → ``Surface Normal head``,
    ``train/weight/normal`` → ``Surface Normal``, ``test/normal/angle_mean`` → ``Surface Normal Mean``,
    ``val/delta_t`` → ``ΔT``; the prefix (what is plotted) belongs in the axis label."""
    for prefix in (S.SPARSITY_PREFIX, S.FINAL_SPARSITY_PREFIX, S.THRESHOLD_PREFIX):
        if key.startswith(prefix):
            return component_name(key[len(prefix):])
    for prefix in (S.TRAIN_WEIGHT_PREFIX, S.TRAIN_LOSS_PREFIX):
        if key.startswith(prefix):
            return task_name(key[len(prefix):])
    for prefix in (S.VAL_PREFIX, S.TEST_PREFIX):
        if key.startswith(prefix):
            rest = key[len(prefix):]
            if rest == S.DELTA_T:
                return "ΔT"
            if rest.startswith(S.DELTA_T + "/"):
                return f"ΔT {task_name(rest[len(S.DELTA_T) + 1:])}"
            task, _, metric = rest.partition("/")
            return f"{task_name(task)} {metric_name(metric)}" if metric else task_name(task)
    return _readable(key)


def arch_name(arch: str) -> str:
    return ARCH_LABELS.get(str(arch), str(arch))


def dataset_name(dataset: str) -> str:
    return DATASET_LABELS.get(str(dataset), str(dataset))


def method_name(method: str, variant: object = None) -> str:
    """The registry's display name (``AdapMTL``), followed by a variant label when there is one."""
    from results.method_registry import method_metadata

    display = method_metadata(method).get("display_name")
    if not display or display == method:
        display = METHOD_LABELS.get(method, method)
    return f"{display} {variant}" if isinstance(variant, str) and variant else display
