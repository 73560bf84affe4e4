"""AdapMTL's default search space (θ_init, λ, window) and its fixed defaults (the paper's configuration).

Ranges, and where they come from:

* ``theta_init`` ∈ uniform[−25, −10]. α = σ(θ) starts at 1.4e−11 … 4.5e−5: dense at the start, as the paper
  wants ("θ_init regulates the duration of dense training", supplement B). Anchors: supplement B and the
  README seed recommend −20; the released logs use −15 (ResNet34) and −18 (MobileNetV2); scripts start from
  a dense checkpoint with −10; the code's default is −30.5. Outside the range is uninteresting for a sweep:
  −1000 stays dense for the whole run (σ = 0 exactly and θ only moves ≈ lr per step), and positive values
  prune almost everything at step 0 (README seed: "a small positive value quickly introduces sparsity").
  Short CPU runs (hundreds of steps, θ moves ≈ lr·steps < 1) need values nearer −5 or a
  ``threshold_lr_scale`` > 1; set them in the sweep spec.
* ``lam`` ∈ loguniform[1.25, 20], λ of Eq. 6 as written (``trainers.adapmtl.lambda_factor``): the factor
  λ·|W_B|/Σ|W_t| then spans 0.38 … 6.1 on DeepLab-ResNet34 (ratio 0.307), centred on the default λ = 5
  (Table 5's "(=5)", factor 1.53). Under Adam with coupled weight decay this factor trades the task losses
  against the decay that raises the thresholds, so it is a real sparsity/accuracy knob. MobileNetV2's ratio
  is 0.014: its sweeps need λ about 20× larger for the same factor (``examples/nyuv2_mobilenetv2.yaml``
  searches [20, 300]).
* ``window`` ∈ {100, 200, 400, 500, 800}: 400 is the paper's choice (Fig. 6, supplement B), 500 the official
  code's constant; the others bracket them (Fig. 6 sweeps sizes around 400).
"""

from __future__ import annotations

from typing import Any

#: Every trial uses these unless the sweep spec overrides them: the paper's configuration (Eq. 6 weighting with
#: the sliding window and λ, one threshold per component, mask fixed at the target — supplement D).
FIXED: dict[str, Any] = {
    "weighting": "paper",
    "sliding_window": True,
    "use_lambda": True,
    "thresholds": "per_component",
    "on_target": "fix_mask",
}


def space() -> dict[str, Any]:
    """The tunable parameters as Ray Tune domains (OptunaSearch converts them)."""
    from ray import tune

    return {
        "theta_init": tune.uniform(-25.0, -10.0),
        "lam": tune.loguniform(1.25, 20.0),
        "window": tune.choice([100, 200, 400, 500, 800]),
    }
