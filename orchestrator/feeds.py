"""One Tune searcher that feeds a whole sweep: the dense references first, then every group once its
reference is usable, each group with its own search.

Why one Tuner: every ``Tuner`` starts its own trial actors, and a fresh actor pays the imports of torch,
torchvision and mlflow again (~6-7 s on the 2-core reference machine, benchmarks/RESULTS.md Q3). A sweep
run as phases (a Tuner for the references, one for the fixed groups, one per searched group) paid that at
every phase change and let the slots drain at every barrier. Fed by this searcher, one Tuner with
``reuse_actors=True`` keeps its actors for the whole sweep and starts a group's trial whenever a slot frees.

Per group: one trial for a fixed group; every combination for grid search; an Optuna study (TPE, or
Optuna's random sampler) for ``optuna`` / ``random`` — never pooled across groups, so methods are tuned
separately, as the paper compares them. A group is released only after its reference trial completed *and*
the reference's MLflow run is FINISHED with no metric equal to 0 (ΔT is a relative change); otherwise the
group is dropped with a one-line message, and the sweep goes on.

Warm second slot (round 3): once every reference has been issued, a free slot is not left empty while a
reference trains: the searcher issues a trial of a group whose reference is still running (``early``). Its
actor starts and imports torch & co. while the reference trains, then the trial waits
(``orchestrator.trial.wait_for_reference``) and starts the moment the reference's MLflow run is FINISHED —
the second slot's ~9 s start is no longer between the reference and the groups (benchmarks/RESULTS.md Q3).
A waiting trial learns that its reference cannot serve from the reference's MLflow run (FAILED/KILLED, or a
zero metric) or, when the reference's trial died without recording anything, from the tag
``reference_dropped/<reference id>`` that this searcher sets on the sweep's parent run when it drops the
reference; the trial then ends at once without creating a run (``reference_unavailable``).

Everything here is plain data (and Optuna objects, which pickle), so ``save``/``restore`` pickle the whole
searcher and ``Tuner.restore`` continues every study where it stopped: resuming never over-samples.
"""

from __future__ import annotations

import itertools
import pickle
import sys
from dataclasses import dataclass, field
from typing import Any

from ray.tune.search import Searcher

from orchestrator import tracking


def _log(msg: str) -> None:
    print(f"adapmtl: {msg}", file=sys.stderr, flush=True)


@dataclass
class GroupFeed:
    """The trials of one group: ``budget`` suggestions of its ``params`` (none for a fixed group)."""

    group_id: str
    reference_id: str
    budget: int
    combos: list[dict[str, Any]] | None = None  # grid search: every combination, in order
    study: Any = None  # an OptunaSearch over the group's space (optuna / random)
    issued: int = 0

    @property
    def exhausted(self) -> bool:
        return self.issued >= self.budget

    def next_params(self, trial_id: str) -> dict[str, Any] | None:
        if self.exhausted:
            return None
        if self.study is not None:
            params = self.study.suggest(trial_id)
            if params is None:  # the study wants results first (never with Optuna's samplers, but allowed)
                return None
        elif self.combos is not None:
            params = self.combos[self.issued]
        else:
            params = {}
        self.issued += 1
        return params


def make_feed(group_id: str, reference_id: str, space: dict[str, Any], *, algorithm: str, samples: int,
              seed: int, mode: str, metric: str = "objective") -> GroupFeed:
    """A group's feed: fixed (empty space), grid (product of choices) or an Optuna study (TPE / random)."""
    if not space:
        return GroupFeed(group_id, reference_id, budget=1)
    if algorithm == "grid":
        names = sorted(space)
        values = [list(space[n].categories) for n in names]
        combos = [dict(zip(names, combo, strict=True)) for combo in itertools.product(*values)]
        return GroupFeed(group_id, reference_id, budget=len(combos), combos=combos)
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = (optuna.samplers.TPESampler(seed=seed) if algorithm == "optuna"
               else optuna.samplers.RandomSampler(seed=seed))
    # Converted here with OptunaSearch's own converter: given Tune domains, its constructor converts them the
    # same way but first warns "You passed a space parameter ... unresolved search space definitions" on
    # every group. Same distributions in the same order, so the same seed samples the same values.
    study = OptunaSearch(space=OptunaSearch.convert_search_space(dict(space)), metric=metric, mode=mode,
                         sampler=sampler)
    return GroupFeed(group_id, reference_id, budget=samples, study=study)


@dataclass
class ReferenceCheck:
    """Whether a completed reference can serve as ΔT reference (looked up in MLflow by its run_key)."""

    tracking_uri: str
    experiment_id: str
    run_keys: dict[str, str] = field(default_factory=dict)  # reference id -> run_key
    parent_run_id: str | None = None  # where a dropped reference is announced to waiting trials

    def announce_dropped(self, ref_id: str, why: str) -> None:
        """Tell trials waiting on ``ref_id`` that it will not serve (a tag on the sweep's parent run)."""
        if self.parent_run_id is None:
            return
        try:
            tracking.client(self.tracking_uri).set_tag(self.parent_run_id, dropped_tag(ref_id), why[:5000])
        except Exception as exc:  # the waiting trials also see the reference run's own status
            _log(f"could not announce that reference {ref_id} is dropped: {exc}")

    def withdraw_dropped(self, ref_ids: list[str]) -> None:
        """Remove the announcements for references a next attempt will retrain (``resume`` reopens the same
        parent run: a stale tag would stop that attempt's waiting trials at once)."""
        if self.parent_run_id is None:
            return
        c = tracking.client(self.tracking_uri)
        tags = c.get_run(self.parent_run_id).data.tags
        for ref in ref_ids:
            if dropped_tag(ref) in tags:
                c.delete_tag(self.parent_run_id, dropped_tag(ref))

    def problem(self, ref_id: str, error: bool) -> str | None:
        """Why the reference cannot serve (the reason MLflow recorded, when there is one), or None."""
        run = tracking.find_run(self.tracking_uri, self.experiment_id, {"run_key": self.run_keys[ref_id]})
        if run is not None and run.info.status in ("FAILED", "KILLED"):
            reason = run.data.tags.get("failure_reason", "").strip().splitlines()
            if reason:
                return f"failed: {reason[0][:300]}"
        if error:
            return "its trial errored (no reason was recorded in MLflow)"
        if run is None or run.info.status != "FINISHED":
            return "did not finish"
        zeros = zero_metrics(tracking.reference_metrics(run))
        if zeros:
            return (f"{', '.join(zeros)} = 0, so ΔT (a relative change) is undefined (train the reference "
                    "longer or drop that task)")
        return None


def dropped_tag(ref_id: str) -> str:
    """The parent-run tag that says a reference was dropped (its value: why)."""
    return f"reference_dropped/{ref_id}"


def zero_metrics(metrics: dict[str, Any]) -> list[str]:
    """Reference metrics that are exactly 0: ΔT's relative change is undefined for them (DESIGN §3.5)."""
    return sorted({f"{t}/{m}" for split in ("val", "test") for t, ms in metrics[split].items()
                   for m, v in ms.items() if v == 0})


class SweepSearcher(Searcher):
    """Suggests ``{"unit": id}`` for references, ``{"unit": group, "params": {...}}`` for group trials.

    ``suggest`` returns ``None`` ("nothing now, ask again") while every remaining group waits on a running
    reference, and ``Searcher.FINISHED`` once all feeds are exhausted or dropped.
    """

    def __init__(self, references: list[str], feeds: list[GroupFeed], check: ReferenceCheck,
                 mode: str = "max", metric: str = "objective") -> None:
        # No metric for Tune itself: it would demand it from every result, and references report none.
        super().__init__(metric=None, mode=mode)
        self.objective = metric
        self.references = list(references)
        self.feeds = list(feeds)
        self.check = check
        self.to_issue = list(references)
        self.running_refs: dict[str, str] = {}  # trial id -> reference id
        self.ready: set[str] = set()
        self.dropped: dict[str, str] = {}  # reference id -> why
        self.owner: dict[str, int] = {}  # trial id -> index into feeds

    # -- Searcher API -------------------------------------------------------------------------------
    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        return True  # our metric/mode are fixed at construction; the Tuner passes none

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if self.to_issue:
            ref = self.to_issue.pop(0)
            self.running_refs[trial_id] = ref
            return {"unit": ref}
        waiting_on = set(self.running_refs.values())
        # groups whose reference is usable first, then (a free slot) one whose reference still trains
        for usable in (self.ready, waiting_on):
            for i, feed in enumerate(self.feeds):
                if feed.reference_id not in usable or feed.exhausted:
                    continue
                params = feed.next_params(trial_id)
                if params is not None:
                    self.owner[trial_id] = i
                    return {"unit": feed.group_id, "params": params} if params else {"unit": feed.group_id}
        if self.running_refs or any(f.reference_id not in self.ready and f.reference_id not in self.dropped
                                    for f in self.feeds):
            return None
        return Searcher.FINISHED

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        i = self.owner.get(trial_id)
        if i is not None and self.feeds[i].study is not None and self.objective in result:
            self.feeds[i].study.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        ref = self.running_refs.pop(trial_id, None)
        if ref is not None:
            why = self.check.problem(ref, error or bool((result or {}).get("trial_failed")))
            if why is None:
                self.ready.add(ref)
            else:
                self.dropped[ref] = why
                self.check.announce_dropped(ref, why)
                groups = [f.group_id for f in self.feeds if f.reference_id == ref]
                _log(f"reference {ref}: {why}; its {len(groups)} group(s) are skipped")
            return
        i = self.owner.get(trial_id)
        if i is not None and self.feeds[i].study is not None:
            ok = (result is not None and self.objective in result and not error
                  and not result.get("reference_unavailable"))
            self.feeds[i].study.on_trial_complete(trial_id, result if ok else None, error=error or not ok)

    @property
    def total(self) -> int:
        """The most trials this searcher can suggest (the Tuner's ``num_samples``)."""
        return len(self.references) + sum(f.budget for f in self.feeds)

    # -- checkpointing (Tuner.restore) -----------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def set_state(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as fh:
            pickle.dump(self.get_state(), fh)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as fh:
            self.set_state(pickle.load(fh))
