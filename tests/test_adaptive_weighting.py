"""β_t against hand computations on fixed loss sequences, for every variant (paper Eq. 6 / METHODS_SPEC §1.8)."""

from __future__ import annotations

import pytest
import torch

from trainers.adaptive_weighting import AdaptiveWeighting

TASKS = ["a", "b", "c"]
# three tasks, 7 steps: a is steady, b fluctuates, c in between
LOSSES = [
    [2.0, 1.0, 4.0],
    [1.8, 1.5, 3.0],
    [1.7, 0.8, 3.5],
    [1.6, 1.6, 3.2],
    [1.5, 0.9, 2.5],
    [1.45, 1.4, 2.8],
    [1.4, 0.7, 2.6],
]


def _run(w: AdaptiveWeighting, steps: int | None = None) -> list[list[float]]:
    out = []
    for i, row in enumerate(LOSSES[:steps]):
        beta = w(i, {t: torch.tensor(v) for t, v in zip(TASKS, row)})
        out.append([float(beta[t]) for t in TASKS])
    return out


def _changes() -> list[list[float]]:
    """r_t(j) = |L(j) − L(j−1)| / L(j) for j = 1.."""
    return [[abs(LOSSES[j][k] - LOSSES[j - 1][k]) / LOSSES[j][k] for k in range(3)] for j in range(1, len(LOSSES))]


def _paper_expected(window: int, warmup: int, factor: float) -> list[list[float]]:
    r = _changes()
    expected = []
    for i in range(len(LOSSES)):
        if i < warmup or i == 0:
            expected.append([1.0, 1.0, 1.0])
            continue
        recent = r[max(0, i - window):i]  # the changes recorded up to step i, last `window`
        d = [sum(col) / len(recent) for col in zip(*recent)]
        mean = sum(d) / 3
        expected.append([mean / dk * factor for dk in d])
    return expected


@pytest.mark.parametrize("window,sliding,warmup,factor", [
    (3, True, 2, 1.0),     # paper, sliding window
    (3, False, 2, 1.0),    # w/o sliding window: adjacent steps only (K = 1)
    (400, True, 0, 1.0),   # window longer than the run: mean of what exists
    (3, True, 4, 2.5),     # λ·|W_B|/Σ|W_t| = 2.5
])
def test_paper_variant_matches_hand_computation(window, sliding, warmup, factor):
    w = AdaptiveWeighting(TASKS, variant="paper", window=window, sliding_window=sliding, warmup=warmup,
                          factor=factor)
    got = _run(w)
    expected = _paper_expected(window if sliding else 1, warmup, factor)
    for i, (g, e) in enumerate(zip(got, expected)):
        assert g == pytest.approx(e, rel=1e-5), f"step {i}"
    # the steady task a gets the largest β (stable → prune more aggressively, paper §3.3)
    assert got[-1][0] > got[-1][1]


def test_paper_variant_explicit_numbers():
    """One step spelled out: K = 1 at step 1."""
    w = AdaptiveWeighting(TASKS, variant="paper", window=1, warmup=0)
    _run(w, steps=2)
    d = [0.2 / 1.8, 0.5 / 1.5, 1.0 / 3.0]
    mean = sum(d) / 3
    torch.testing.assert_close(w.beta, torch.tensor([mean / x for x in d]))


def _official_expected(window: int, begin: int) -> list[list[float]]:
    """METHODS_SPEC §1.8 pseudocode, literally (lists and pops), with T instead of the hard-coded 3."""
    prev: list[float | None] = [None] * 3
    hist: list[list[float]] = [[], [], []]
    weights = [1.0, 1.0, 1.0]
    out = []
    for i, row in enumerate(LOSSES):
        for k, ell in enumerate(row):
            if i >= begin:
                if prev[k] is not None:
                    hist[k].append(abs(prev[k] - ell) / ell)
                prev[k] = ell
                if len(hist[k]) > window:
                    hist[k].pop(0)
                    weights[k] = sum(hist[k]) / len(hist[k])
        s = sum(weights)
        weights = [x * 3 / s for x in weights]
        out.append(list(weights))
    return out


@pytest.mark.parametrize("window,begin", [(2, 0), (2, 2), (1, 1), (3, 0)])
def test_official_code_variant_matches_the_repository_logic(window, begin):
    w = AdaptiveWeighting(TASKS, variant="official_code", window=window, warmup=begin)
    got = _run(w)
    expected = _official_expected(window, begin)
    for i, (g, e) in enumerate(zip(got, expected)):
        assert g == pytest.approx(e, rel=1e-5), f"step {i}"
    # first adaptive step: begin + window + 1; the fluctuating task b gets the largest weight (∝ fluctuation)
    first = begin + window + 1
    assert got[first - 1] == pytest.approx([1.0, 1.0, 1.0])
    assert got[first] != pytest.approx([1.0, 1.0, 1.0])
    assert sum(got[-1]) == pytest.approx(3.0) and got[-1][1] == max(got[-1])


def test_equal_variant_is_one():
    w = AdaptiveWeighting(TASKS, variant="equal")
    assert all(row == [1.0, 1.0, 1.0] for row in _run(w))


def test_state_round_trip_continues_identically():
    full = AdaptiveWeighting(TASKS, variant="paper", window=3, warmup=1)
    ref = _run(full)
    first = AdaptiveWeighting(TASKS, variant="paper", window=3, warmup=1)
    for i, row in enumerate(LOSSES[:4]):
        first(i, {t: torch.tensor(v) for t, v in zip(TASKS, row)})
    second = AdaptiveWeighting(TASKS, variant="paper", window=3, warmup=1)
    second.load_state_dict(first.state_dict())
    for i, row in enumerate(LOSSES[4:], start=4):
        beta = second(i, {t: torch.tensor(v) for t, v in zip(TASKS, row)})
        assert [float(beta[t]) for t in TASKS] == pytest.approx(ref[i], rel=1e-6)


def test_outputs_are_device_tensors_without_grad():
    w = AdaptiveWeighting(TASKS, variant="paper", window=2, warmup=0)
    losses = {t: torch.tensor(1.0 + k, requires_grad=True) * 1 for k, t in enumerate(TASKS)}
    beta = w(0, losses)
    beta = w(1, {t: v * 0.9 for t, v in losses.items()})
    assert all(isinstance(b, torch.Tensor) and b.dim() == 0 and not b.requires_grad for b in beta.values())
