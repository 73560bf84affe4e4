"""Spec validation that must not let bad input through quietly: real YAML error locations, non-finite numbers,
and a changed spec under an existing sweep name (extending is fine, changing meaning is refused)."""

from __future__ import annotations

import copy

import pytest
import yaml
from test_spec import TINY

from orchestrator.cli import main
from orchestrator.spec import SpecError, load_spec, parse_spec
from orchestrator.spec_change import differences, meaning


def test_yaml_error_keeps_its_real_line_and_column(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nmethods:\n  dense: {}\n sparsities: [0.5]\n")  # line 4 is indented by one space
    assert main(["run", str(bad), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "line 4, column 2" in err, err
    assert "expected <block end>" in err and "starts at line 1, column 1" in err, err


@pytest.mark.parametrize("key,value", [("train.lr", ".inf"), ("train.lr", ".nan"),
                                       ("search.sparsity_penalty", "-.inf"),
                                       ("methods.imp.prune_fraction_per_round", ".nan"),
                                       ("sparsities", "[0.5, .nan]")])
def test_non_finite_numbers_are_refused_everywhere(tmp_path, capsys, key, value):
    text = yaml.safe_dump(TINY)
    data = yaml.safe_load(text)
    *path, last = key.split(".")
    cur = data
    for p in path:
        cur = cur.setdefault(p, {})
    cur[last] = "@@"
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(data).replace("'@@'", value))
    assert main(["run", str(spec), "--dry-run", "--workdir", str(tmp_path / "wd")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert key.split(".")[0] in err and "finite" in err, err


def test_non_finite_strings_are_not_coerced_into_floats():
    data = copy.deepcopy(TINY)
    data["search"] = {"sparsity_penalty": "inf"}
    with pytest.raises(SpecError, match="finite"):
        parse_spec(data)
    from trainers.config import RunConfig

    with pytest.raises(ValueError, match="finite"):
        RunConfig(train={"lr": "nan"})
    with pytest.raises(ValueError, match="finite"):
        RunConfig(method="adapmtl", target_sparsity=0.5, method_params={"theta_init": "-inf"})


# -- a changed spec under an existing name -------------------------------------------------------------
def _spec(**changes) -> object:
    data = copy.deepcopy(TINY)
    for dotted, value in changes.items():
        *path, last = dotted.split("__")
        cur = data
        for p in path:
            cur = cur.setdefault(p, {})
        cur[last] = value
    return parse_spec(data)


def test_extending_a_sweep_changes_nothing_it_means():
    old = _spec()
    new = _spec(seeds=[0, 1], sparsities=[0.5, 0.9, 0.95], architectures=["resnet34", "mobilenetv2"],
                methods={**TINY["methods"], "lth": {}}, resources={"cpus_per_worker": 2},
                search__max_concurrent=3, ray={"num_cpus": 2}, description="more seeds")
    assert differences(meaning(old), meaning(new)) == []
    fewer = _spec(methods={"dense": {}, "snip": {}})  # leaving a method out is not a change of meaning
    assert differences(meaning(old), meaning(fewer)) == []


def test_defaults_written_out_mean_the_same_as_defaults_left_out():
    old = _spec()
    explicit = _spec(train={**TINY["train"], "lr": 1e-3, "lr_decay": 0.5}, methods={**TINY["methods"], "snip": {"batches": 1}})
    assert differences(meaning(old), meaning(explicit)) == []


@pytest.mark.parametrize("change,fragment", [
    ({"dataset__name": "nyuv2"}, 'dataset.name: "synthetic_scenes" → "nyuv2"'),
    ({"dataset__tasks": ["segment_semantic"]}, "dataset.tasks"),
    ({"train__lr": 0.01}, "train.lr: 0.001 → 0.01"),
    ({"model__width": 0.25}, "model.width"),
    ({"methods": {**TINY["methods"], "imp": {"prune_fraction_per_round": 0.5}}},
     "methods.imp.params.prune_fraction_per_round: 0.3 → 0.5"),
    ({"search__metric": "val/delta_t/normal"}, "search.metric"),
    ({"search__sparsity_penalty": 2.0}, "search.sparsity_penalty"),
])
def test_a_change_of_meaning_is_listed(change, fragment):
    diffs = differences(meaning(_spec()), meaning(_spec(**change)))
    assert any(fragment in d for d in diffs), diffs


def test_a_new_spec_section_is_part_of_the_meaning_without_listing_it(monkeypatch):
    """Sections the spec gains later (e.g. metric conventions) are compared without touching spec_change."""
    from orchestrator import spec_change

    base = meaning(_spec())
    grown = copy.deepcopy(base)
    grown["common"]["future.section"] = "official"
    assert differences(base, grown) == ['future.section: (unset) → "official"']
    assert not any(k.startswith(spec_change.EXTENDABLE) for k in base["common"])


def test_metric_conventions_are_compared_resolved():
    """The dataset's default conventions spelled out are no change; another set is (its knobs listed)."""
    base = meaning(_spec())
    assert base == meaning(_spec(metrics={"convention": "standard"}))  # synthetic scenes: standard by default
    diff = differences(base, meaning(_spec(metrics={"convention": "official"})))
    assert 'metrics.miou_absent: "present" → "ignore"' in diff


def test_stored_spec_round_trips_to_the_same_meaning(tmp_path):
    from orchestrator.spec import dump_spec

    spec = _spec(train={**TINY["train"], "lr": 0.002})
    (tmp_path / "s.yaml").write_text(dump_spec(spec))
    assert differences(meaning(load_spec(tmp_path / "s.yaml")), meaning(spec)) == []


def test_a_changed_spec_is_refused_against_the_stored_spec_or_the_parent_run(tmp_path):
    """Real sqlite MLflow: the sweep dir's spec.yaml, or (another work dir sharing the store) the parent
    run's ``spec_meaning`` tag, is what a spec under the same name is compared with."""
    from orchestrator import tracking
    from orchestrator.paths import SweepPaths
    from orchestrator.spec import dump_spec
    from orchestrator.spec_change import MEANING_TAG, meaning_json
    from orchestrator.sweep import check_unchanged

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracking.check_reachable(uri)
    old = _spec()
    changed = _spec(dataset__name="nyuv2")
    extended = _spec(seeds=[0, 1, 2])

    here = SweepPaths(tmp_path / "here", old.name).ensure()
    here.spec.write_text(dump_spec(old))
    with pytest.raises(SpecError, match=r'already exists with another meaning .*spec\.yaml\): dataset\.name: '
                                        r'"synthetic_scenes" → "nyuv2"'):
        check_unchanged(changed, here, uri)
    assert check_unchanged(extended, here, uri) == meaning_json(extended)

    exp = tracking.ensure_experiment(uri, old.name)
    parent = tracking.get_or_create_parent(uri, exp, old.name, {})
    tracking.client(uri).set_tag(parent, MEANING_TAG, meaning_json(old))
    elsewhere = SweepPaths(tmp_path / "elsewhere", old.name).ensure()  # no spec.yaml in this work dir
    with pytest.raises(SpecError, match=f"MLflow parent run {parent}"):
        check_unchanged(changed, elsewhere, uri)
    check_unchanged(extended, elsewhere, uri)
