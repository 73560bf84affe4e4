"""Round-3 speed-ups of the training loop that must not change a single bit of a run.

* ``Adam(foreach=True)`` on the CPU = the per-parameter loop torch picks by default there;
* the per-sample seeding of ``SeededSamples`` (CPU generator only) = ``torch.manual_seed``'s samples;
* ``trainers.data.flip.HorizontalFlip`` = torchvision's ``flip_only_transform``;
* ``trainers.models.blocks`` = the torchvision blocks it restates (same parameters, same init, same outputs).
"""

from __future__ import annotations

import pytest
import torch

from trainers.data.flip import HorizontalFlip
from trainers.data.labels import LabelSpec
from trainers.loader import SeededSamples, _sample_seed
from trainers.models import build_model

TASKS = {"segment_semantic": 6, "normal": 3, "depth_zbuffer": 1}


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.view(torch.int32) if t.dtype == torch.float32 else t


def test_foreach_adam_equals_the_per_parameter_loop_bit_for_bit():
    models = []
    for foreach in (False, True):
        torch.manual_seed(0)
        model = build_model("resnet34", TASKS, width=0.0625)
        opt = torch.optim.Adam(model.parameters(), lr=2e-3, betas=(0.5, 0.999), weight_decay=1e-4, foreach=foreach)
        for step in range(4):
            x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(step))
            opt.zero_grad(set_to_none=True)
            sum(v.square().mean() for v in model(x).values()).backward()
            opt.step()
        models.append((model, opt))
    (a, oa), (b, ob) = models
    for (name, pa), (_, pb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(_bits(pa), _bits(pb)), name
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        for key in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(_bits(oa.state[pa][key]), _bits(ob.state[pb][key]))


class _Draws(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 5

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.cat([torch.rand(3), torch.randn(2), torch.randint(0, 100, (2,)).float()])


def test_seeded_samples_draw_what_torch_manual_seed_gave():
    ds = SeededSamples(_Draws(), seed=11)
    before = torch.get_rng_state()
    for key in (0, 3, 7, 12):
        epoch, index = divmod(key, 5)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_sample_seed(11, epoch, index))  # the implementation before round 3
            expected = _Draws()[index]
        assert torch.equal(ds[key], expected)
    assert torch.equal(torch.get_rng_state(), before)  # the global stream is untouched


@pytest.mark.parametrize("seed", range(6))
def test_plain_flip_equals_the_torchvision_flip(seed):
    from trainers.data.transforms import flip_only_transform

    g = torch.Generator().manual_seed(seed)
    image = torch.rand(3, 9, 11, generator=g)
    labels = {"segment_semantic": torch.randint(0, 6, (1, 9, 11), generator=g),
              "normal": torch.randn(3, 9, 11, generator=g), "depth_zbuffer": torch.rand(1, 9, 11, generator=g)}
    specs = {"normal": LabelSpec(normal=True), "segment_semantic": LabelSpec(255)}
    outs = []
    for tf in (flip_only_transform(0.5, negate_normal_x=True), HorizontalFlip(0.5, negate_normal_x=True)):
        torch.manual_seed(100 + seed)
        outs.append((tf(image.clone(), {k: v.clone() for k, v in labels.items()}, specs), torch.rand(())))
    ((ia, la, ma), ra), ((ib, lb, mb), rb) = outs
    assert torch.equal(ra, rb)  # the same number of draws from the global generator
    assert torch.equal(_bits(ia), _bits(ib)) and torch.equal(ma, mb)
    assert la.keys() == lb.keys()
    for k in la:
        assert la[k].dtype == lb[k].dtype and torch.equal(_bits(la[k]), _bits(lb[k])), k
    flipped = not torch.equal(ib, image)
    assert flipped == (not torch.equal(lb["depth_zbuffer"], labels["depth_zbuffer"]))


def test_both_flip_outcomes_are_covered():
    seen = set()
    for seed in range(6):
        torch.manual_seed(100 + seed)
        seen.add(bool(torch.rand(()) < 0.5))
    assert seen == {True, False}


@pytest.mark.parametrize("arch", ["resnet34", "mobilenetv2"])
def test_model_blocks_equal_torchvision(arch, monkeypatch):
    """The restated blocks build the same parameters in the same order (same seeded init) and outputs."""
    import torchvision.models.mobilenetv2 as tv_mnv2
    import torchvision.models.resnet as tv_resnet
    import torchvision.ops.misc as tv_misc

    import trainers.models.deeplab_resnet as dr
    import trainers.models.mobilenetv2 as mn

    torch.manual_seed(3)
    ours = build_model(arch, TASKS, width=0.125)
    monkeypatch.setattr(dr, "conv1x1", tv_resnet.conv1x1)
    monkeypatch.setattr(dr, "conv3x3", tv_resnet.conv3x3)
    monkeypatch.setattr(mn, "InvertedResidual", tv_mnv2.InvertedResidual)
    monkeypatch.setattr(mn, "Conv2dNormActivation", tv_misc.Conv2dNormActivation)
    torch.manual_seed(3)
    theirs = build_model(arch, TASKS, width=0.125)
    sa, sb = ours.state_dict(), theirs.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    if arch == "mobilenetv2":
        assert any(isinstance(m, tv_mnv2.InvertedResidual) for m in theirs.modules())
    ours.eval(), theirs.eval()
    x = torch.randn(2, 3, 48, 48)
    for t, v in ours(x).items():
        assert torch.equal(v, theirs(x)[t]), t


def test_training_imports_no_torchvision():
    import subprocess
    import sys

    code = ("import sys; import trainers.engine, trainers.adapmtl, baselines.snip; "
            "from trainers.data import build_dataset; "
            "print(any(m == 'torchvision' or m.startswith('torchvision.') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("p", [0.5, 0.3])
def test_fast_dropout_equals_nn_dropout_bit_for_bit(p):
    from trainers.models.dropout import Dropout

    x = torch.randn(4, 16, 5, 5, requires_grad=True)
    g = torch.randn(4, 16, 5, 5)
    outs = []
    for module in (torch.nn.Dropout(p), Dropout(p)):
        torch.manual_seed(21)
        y = module(x)
        (grad,) = torch.autograd.grad(y, x, g)
        outs.append((y.detach(), grad, torch.rand(3)))  # the generator is left where nn.Dropout leaves it
    for a, b in zip(*outs, strict=True):
        assert torch.equal(_bits(a), _bits(b))
    assert 0 < int((outs[0][0] == 0).sum()) < x.numel()


def test_fast_dropout_falls_back_where_the_draws_differ(monkeypatch):
    import trainers.models.dropout as dmod

    calls = []
    monkeypatch.setattr(dmod, "replicates_bernoulli", lambda n, keep: calls.append(n) or False)
    x = torch.randn(3, 7)
    torch.manual_seed(5)
    a = dmod.Dropout(0.5)(x)
    torch.manual_seed(5)
    b = torch.nn.Dropout(0.5)(x)
    assert calls == [21] and torch.equal(a, b)
    assert torch.equal(dmod.Dropout(0.5).eval()(x), x)
