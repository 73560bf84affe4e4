"""The sweep's one-Tuner searcher: ordering, reference gating, per-group budgets, checkpoint round trip.

The reference check reads a real sqlite MLflow store (no mocks); Tune itself is not started here — the
integration tests in test_orchestrator.py run the searcher inside a real Tuner.
"""

from __future__ import annotations

import pickle

import pytest
from ray import tune
from ray.tune.search import Searcher

from orchestrator import tracking
from orchestrator.feeds import ReferenceCheck, SweepSearcher, make_feed

SPACE = {"theta_init": tune.uniform(-7.0, -4.0), "window": tune.choice([20, 40, 80])}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    uri = f"sqlite:///{tmp_path_factory.mktemp('feeds') / 'mlflow.db'}"
    tracking.check_reachable(uri)
    return uri, tracking.ensure_experiment(uri, "feeds")


def reference_run(store, key: str, *, status: str = "FINISHED", miou: float = 40.0) -> None:
    uri, exp = store
    run_id = tracking.create_run(uri, exp, run_name=key, tags={"run_key": key, "role": "reference"})
    c = tracking.client(uri)
    c.log_metric(run_id, "val/segment_semantic/miou", miou)
    c.log_metric(run_id, "test/segment_semantic/miou", 41.0)
    c.set_terminated(run_id, status=status)


def searcher(store, refs: dict[str, str], feeds: list) -> SweepSearcher:
    uri, exp = store
    return SweepSearcher(list(refs), feeds, ReferenceCheck(uri, exp, refs), mode="max")


def drain(s: SweepSearcher, prefix: str) -> list:
    """Suggestions until the searcher waits (None) or is finished."""
    out = []
    for i in range(100):
        sug = s.suggest(f"{prefix}{i}")
        if sug is None or sug == Searcher.FINISHED:
            out.append(sug)
            return out
        out.append(sug)
    raise AssertionError("searcher never paused")


def test_references_first_then_groups_once_their_reference_finished(store):
    reference_run(store, "key-a")
    feeds = [make_feed("snip-a", "ref-a", {}, algorithm="optuna", samples=1, seed=0, mode="max"),
             make_feed("adapmtl-a", "ref-a", SPACE, algorithm="optuna", samples=3, seed=0, mode="max")]
    s = searcher(store, {"ref-a": "key-a"}, feeds)
    assert s.total == 1 + 1 + 3
    assert s.suggest("t0") == {"unit": "ref-a"}
    # a free slot while the reference trains: an early trial (it waits for the reference inside the trial,
    # orchestrator.trial.wait_for_reference), so its actor starts during the reference
    assert s.suggest("t1") == {"unit": "snip-a"}
    s.on_trial_complete("t0", {"completed": 1})
    got = drain(s, "g")
    assert [g["unit"] for g in got[0:3]] == ["adapmtl-a"] * 3
    assert all(-7.0 <= g["params"]["theta_init"] <= -4.0 and g["params"]["window"] in (20, 40, 80)
               for g in got[0:3])
    assert got[3] == Searcher.FINISHED  # budgets exhausted: the Tuner ends once its trials have


def test_groups_wait_for_references_still_to_issue():
    """No early trial while a reference is still to be issued: references get the slots first."""
    feeds = [make_feed("snip-a", "ref-a", {}, algorithm="grid", samples=1, seed=0, mode="max"),
             make_feed("snip-b", "ref-b", {}, algorithm="grid", samples=1, seed=0, mode="max")]
    s = SweepSearcher(["ref-a", "ref-b"], feeds, ReferenceCheck("sqlite:///unused.db", "0", {}), mode="max")
    assert [s.suggest("r0"), s.suggest("r1")] == [{"unit": "ref-a"}, {"unit": "ref-b"}]
    assert [s.suggest("e0"), s.suggest("e1"), s.suggest("e2")] == [{"unit": "snip-a"}, {"unit": "snip-b"}, None]


def test_a_dropped_reference_is_announced_to_waiting_trials(store):
    uri, exp = store
    parent = tracking.create_run(uri, exp, run_name="sweep", tags={"role": "sweep"})
    feeds = [make_feed("snip-x", "ref-x", SPACE, algorithm="optuna", samples=2, seed=0, mode="max")]
    s = SweepSearcher(["ref-x"], feeds, ReferenceCheck(uri, exp, {"ref-x": "key-never-ran"}, parent_run_id=parent),
                      mode="max")
    assert s.suggest("r") == {"unit": "ref-x"}
    early = s.suggest("e")
    assert early["unit"] == "snip-x"
    s.on_trial_complete("r", None, error=True)  # the reference's trial died before its run recorded anything
    tags = tracking.client(uri).get_run(parent).data.tags
    assert tags["reference_dropped/ref-x"].startswith("its trial errored")
    s.on_trial_complete("e", {"completed": 1, "reference_unavailable": 1, "objective": -1e9})
    study = s.feeds[0].study._ot_study
    assert [t.state.name for t in study.trials] == ["FAIL"]  # not a value the search learns from
    assert s.suggest("after") == Searcher.FINISHED


def test_a_reference_that_failed_or_has_a_zero_metric_drops_its_groups(store, capsys):
    reference_run(store, "key-failed", status="FAILED")
    reference_run(store, "key-zero", miou=0.0)
    reference_run(store, "key-ok")
    refs = {"ref-failed": "key-failed", "ref-zero": "key-zero", "ref-ok": "key-ok"}
    feeds = [make_feed(f"snip-{r}", r, {}, algorithm="optuna", samples=1, seed=0, mode="max") for r in refs]
    s = searcher(store, refs, feeds)
    issued = [s.suggest(f"r{i}") for i in range(3)]
    assert sorted(x["unit"] for x in issued) == sorted(refs)
    for i in range(3):
        s.on_trial_complete(f"r{i}", {"completed": 1})
    assert drain(s, "g") == [{"unit": "snip-ref-ok"}, Searcher.FINISHED]
    err = capsys.readouterr().err
    assert "reference ref-failed: did not finish" in err
    assert "reference ref-zero: segment_semantic/miou = 0" in err


def test_grid_feed_enumerates_every_combination():
    feed = make_feed("g", "r", {"window": tune.choice([20, 40]), "lam": tune.choice([1.0, 2.0, 5.0])},
                     algorithm="grid", samples=1, seed=0, mode="max")
    got = [feed.next_params(str(i)) for i in range(7)]
    assert got[-1] is None and feed.budget == 6
    assert sorted((p["lam"], p["window"]) for p in got[:-1]) == sorted(
        (lam, w) for lam in (1.0, 2.0, 5.0) for w in (20, 40))


def test_optuna_study_learns_from_results_and_survives_a_pickle_round_trip(store):
    """What Tuner.restore relies on: a restored searcher suggests what the uninterrupted one would have."""
    reference_run(store, "key-p")

    def fresh() -> SweepSearcher:
        return searcher(store, {"ref-p": "key-p"},
                        [make_feed("ad", "ref-p", SPACE, algorithm="optuna", samples=6, seed=3, mode="max")])

    a = fresh()
    a.suggest("ref")
    a.on_trial_complete("ref", {"completed": 1})
    for i in range(3):
        sug = a.suggest(f"t{i}")
        a.on_trial_complete(f"t{i}", {"objective": sug["params"]["theta_init"]})
    state = pickle.dumps(a.get_state())
    b = fresh()
    b.set_state(pickle.loads(state))
    assert a.suggest("t3") == b.suggest("t3")
    study = b.feeds[0].study._ot_study
    assert len([t for t in study.trials if t.state.name == "COMPLETE"]) == 3
    # a trial without an objective (errored) is recorded as failed, not as a value
    b.on_trial_complete("t3", None, error=True)
    assert study.trials[-1].state.name == "FAIL"


def test_random_feed_is_seeded():
    a = make_feed("g", "r", SPACE, algorithm="random", samples=2, seed=7, mode="max")
    b = make_feed("g", "r", SPACE, algorithm="random", samples=2, seed=7, mode="max")
    assert [a.next_params("x"), a.next_params("y")] == [b.next_params("x"), b.next_params("y")]
    assert a.next_params("z") is None


def test_main_experiment_name_is_stable_and_changes_with_what_it_runs():
    """Resume restores the experiment of the same plan (default spaces are Tune domains: no stable repr);
    an extended spec gets a new one (its finished run_keys are then skipped, not re-trained)."""
    from orchestrator.plan import build_plan
    from orchestrator.spec import parse_spec
    from orchestrator.sweep import _main_name

    def name(**extra) -> str:
        spec = {"name": "n", "methods": {"dense": {}, "snip": {}, "adapmtl": {"search": "default", "samples": 2}},
                "sparsities": [0.9], "dataset": {"name": "synthetic_scenes", "resolution": 32},
                "train": {"iterations": 10}, **extra}
        plan = build_plan(parse_spec(spec))
        return _main_name(plan, plan.groups)

    assert name() == name()
    assert name(seeds=[0, 1]) != name()
    assert name(train={"iterations": 20}) != name()


@pytest.mark.parametrize("algorithm", ["optuna", "random"])
def test_optuna_feed_gets_a_converted_space_same_samples_no_warning(algorithm, caplog):
    """Ray Tune warned "You passed a space parameter to OptunaSearch that contained unresolved search space
    definitions" for every searched group; the feed now converts the space itself, and a seed still samples
    what the unconverted space sampled."""
    import logging

    import optuna
    from ray.tune.search.optuna import OptunaSearch

    space = {**SPACE, "lam": tune.loguniform(0.1, 10.0), "rounds": tune.randint(1, 4)}
    with caplog.at_level(logging.WARNING, logger="ray.tune.search.optuna.optuna_search"):
        feed = make_feed("g", "r", space, algorithm=algorithm, samples=4, seed=11, mode="max")
    assert not [r for r in caplog.records if "unresolved search space" in r.getMessage()]
    sampler_cls = optuna.samplers.TPESampler if algorithm == "optuna" else optuna.samplers.RandomSampler
    with caplog.at_level(logging.WARNING, logger="ray.tune.search.optuna.optuna_search"):
        old = OptunaSearch(space=dict(space), metric="objective", mode="max", sampler=sampler_cls(seed=11))
    assert [r for r in caplog.records if "unresolved search space" in r.getMessage()]  # the old call warned
    assert [feed.next_params(f"t{i}") for i in range(4)] == [old.suggest(f"t{i}") for i in range(4)]
