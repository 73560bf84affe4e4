"""May a spec run under an existing sweep name? Extending it is fine; changing what its runs mean is not.

A sweep's existing runs (its parent run, its groups' trials, the references their ΔT is relative to) were
produced under one dataset, task set, training recipe, metric conventions, search objective... Running a
changed spec under the same name would silently merge new runs with old ones (same group ids, same parent
run, old rows printed as this sweep's results). So every key of the resolved spec is part of its *meaning*,
except:

* the lists a sweep is extended along (``architectures``, ``sparsities``, ``seeds``) and the set of
  ``methods`` entries: adding (or dropping) entries adds (or leaves out) whole groups;
* purely operational keys, which change how, where or how fast runs happen but not what they are
  (``resources``, ``tracking``, ``ray``, ``workdir``, ``description``, ``search.max_concurrent``, a method
  entry's ``samples`` budget).

The comparison is generic over the resolved spec: a section added to ``SweepSpec`` later is part of the
meaning automatically, unless it is added to the operational list here.
"""

from __future__ import annotations

import json
from typing import Any

from orchestrator.spec import SweepSpec

#: Lists along which a sweep may be extended: new values plan new groups, old groups keep their meaning.
EXTENDABLE = ("architectures", "sparsities", "seeds")
#: Keys (dotted, top-level or nested) that do not change what a run means.
OPERATIONAL = ("name", "resources", "tracking", "ray", "workdir", "description", "search.max_concurrent",
               "search.budget", "search.trials_per_group")
#: Keys of one ``methods`` entry that do not change what its runs mean (a larger budget extends a search).
METHOD_OPERATIONAL = ("samples",)
#: MLflow parent-run tag holding the meaning (lets a second work dir sharing the tracking server compare).
MEANING_TAG = "spec_meaning"


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts → ``{"dataset.name": ..., "train.lr": ...}``; lists and scalars are leaf values."""
    if isinstance(obj, dict):  # an empty section means the same as an absent one
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: obj}


def _operational(key: str) -> bool:
    return any(key == op or key.startswith(op + ".") for op in OPERATIONAL)


def meaning(spec: SweepSpec) -> dict[str, Any]:
    """The parts of a resolved spec that define what its runs mean: ``{"common": {...}, "methods": {...}}``
    (flat dotted keys; methods per entry, since entries may be added or dropped)."""
    dumped = spec.model_dump(mode="json")
    dumped["train"] = _resolved_train(spec)
    dumped["metrics"] = _resolved_conventions(spec)
    methods = dumped.pop("methods", {})
    for key in EXTENDABLE:
        dumped.pop(key, None)
    common = {k: v for k, v in _flatten(dumped).items() if not _operational(k)}
    per_method = {}
    for entry, body in methods.items():
        body = {k: v for k, v in (body or {}).items() if k not in METHOD_OPERATIONAL}
        body["params"] = _resolved_params(entry, body.get("params") or {})
        per_method[entry] = _flatten(body)
    return {"common": common, "methods": per_method}


def _resolved_train(spec: SweepSpec) -> dict[str, Any]:
    """Training settings with the dataset's defaults filled in (``{}`` and the explicit defaults agree)."""
    try:
        from trainers.config import RunConfig

        return RunConfig(data={"name": spec.dataset.name}, train=dict(spec.train)).train.model_dump(mode="json")
    except Exception:  # an invalid section is reported by plan validation; compare it as written
        return dict(spec.train)


def _resolved_conventions(spec: SweepSpec) -> dict[str, Any]:
    """The metric conventions the runs are evaluated under (``metrics: {}`` and the dataset's default set
    spelled out agree; a different set is a change of meaning)."""
    try:
        from trainers.conventions import resolve

        return resolve(spec.dataset.name, spec.metrics.model_dump(exclude_none=True),
                       spec.dataset.options).knobs()
    except Exception:  # an invalid section is reported by plan validation; compare it as written
        return spec.metrics.model_dump(mode="json")


def _resolved_params(entry: str, params: dict[str, Any]) -> dict[str, Any]:
    """A method entry's fixed parameters with the method's defaults filled in."""
    try:
        from trainers.methods import validate_params

        return validate_params(entry.partition("@")[0], params).model_dump(mode="json")
    except Exception:
        return dict(params)


def meaning_json(spec: SweepSpec) -> str:
    return json.dumps(meaning(spec), sort_keys=True, separators=(",", ":"), default=str)


def _show(value: Any) -> str:
    return "(unset)" if value is _MISSING else json.dumps(value, default=str)


_MISSING = object()


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Human-readable ``key: old → new`` lines (empty when ``new`` only extends ``old``)."""
    out = []
    a, b = old.get("common", {}), new.get("common", {})
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key, _MISSING), b.get(key, _MISSING)
        if va != vb:
            out.append(f"{key}: {_show(va)} → {_show(vb)}")
    ma, mb = old.get("methods", {}), new.get("methods", {})
    for entry in sorted(set(ma) & set(mb)):
        for key in sorted(set(ma[entry]) | set(mb[entry])):
            va, vb = ma[entry].get(key, _MISSING), mb[entry].get(key, _MISSING)
            if va != vb:
                out.append(f"methods.{entry}.{key}: {_show(va)} → {_show(vb)}")
    return out
