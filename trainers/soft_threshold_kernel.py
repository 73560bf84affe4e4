"""A fused CPU kernel for the soft threshold of one threshold group: fewer passes over the weights.

Why: at the CPU sizes, AdapMTL's extra step time is memory traffic, not arithmetic or dispatch. MobileNetV2
w0.125 has 2.5 M prunable weights (10 MB, 96 % in the ASPP heads), and every weight-sized pass costs ~1 ms
on the 2-core machine; stock ops need ~13 such passes per step (forward ``clamp`` + ``sub``: read W twice,
read and write Ŵ; backward ``softshrink_backward``, ``sign``, two dots: read the incoming gradient, Ŵ three
times and ``sign(Ŵ)`` twice, write ∂L/∂W and ``sign(Ŵ)``), where the maths needs 5 (benchmarks/RESULTS.md,
Q1 round 4). The two loops below make one pass each:

* ``threshold_into(weights, out, λ)``: ``Ŵ = W − clamp(W, −λ, λ)`` for every layer, in memory order, into
  consecutive slices of the group's flat buffer: read W, write Ŵ. Bit for bit the stock ops' result
  (the same IEEE operations per element, +0 inside the band, NaN propagated).
* ``backward_into(grads, Ŵ, grad_out)``: ``∂L/∂W = g·1[Ŵ ≠ 0]`` into the flat gradient buffer (+0 where
  pruned or NaN, exactly ``softshrink_backward(g, Ŵ, 0)``), and in the same pass ``Σ ∂L/∂W · sign(Ŵ)`` (the
  θ-gradient's sum, accumulated in float32 lanes per block and float64 across blocks: the same sum as the
  stock ``dot`` in another order, equal to float32 rounding) and the exact count of ``sign(Ŵ) ≠ 0`` (int64).

The kernel is compiled once per machine with ``torch.utils.cpp_extension.load_inline`` (a C++ compiler and
ninja; ``scripts/install.sh`` builds it, so no trial pays for it) into torch's extension cache. Where it
cannot be built, or with ``ADAPMTL_CPU_KERNEL=0``, the stock ops run instead, with the same Ŵ and ∂L/∂W
bits and the θ-gradient equal to rounding; which one ran is recorded on every run
(``trainers.adapmtl`` logs the metric ``adapmtl/cpu_kernel``: 1 = the kernel ran).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

from torch import Tensor

__all__ = ["ENV_SWITCH", "available", "backward_into", "load", "threshold_into"]

#: ``ADAPMTL_CPU_KERNEL=0`` keeps the stock ops (for comparison, or where building is not wanted).
ENV_SWITCH = "ADAPMTL_CPU_KERNEL"
#: One name per source version: checkouts of different versions sharing one extension cache then never
#: rebuild each other's kernel back and forth (torch would, under a single name).
_NAME = "adapmtl_soft_threshold_v8"

_SOURCE = r"""
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <algorithm>
#include <cmath>
#include <tuple>
#include <vector>

namespace {
constexpr int64_t kGrain = 1 << 15;   // elements per parallel chunk (and per block of the float lanes)
constexpr int kLanes = 16;            // float32 accumulators per chunk (vectorizable, fixed order)

// The two inner loops are compiled twice and picked at load time by the CPU (GCC's target_clones, an ifunc):
// AVX2 where the CPU has it, the x86-64 baseline (SSE2) elsewhere. Why: the backward's selects vectorize
// 8 wide with AVX2, and that loop took 0.67-0.79 ms instead of 0.98-1.16 ms per 2.5 M weights (benchmarks/RESULTS.md,
// Q1 round 5); a cache of built kernels shared by machines of different CPUs still runs everywhere, which
// -march=native would not. The results are the same bits: each element's operations are the same IEEE ops,
// and the products g * sign(w) are exact, so a contracted multiply-add rounds as the separate ones do.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define ADAPMTL_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define ADAPMTL_CLONES
#endif

inline const float* data_of(const at::Tensor& t) { return t.data_ptr<float>(); }

// W - clamp(W, -lam, lam) per element, as at::clamp then at::sub: +0 inside the band, NaN kept.
ADAPMTL_CLONES void threshold_run(const float* __restrict__ x, float* __restrict__ y, int64_t n, float lo, float hi) {
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    float c = v < lo ? lo : v;    // max(v, lo) with v's NaN kept, as at::clamp
    c = hi < c ? hi : c;          // min(c, hi)
    y[i] = v - c;
  }
}

// One element of the backward, as the stock ops give it: s = sign(x) (0 for NaN, as at::sign); o = g where
// s != 0, else +0 (a NaN x counts as pruned, as in at::softshrink_backward); acc += o * s; cnt += (s != 0),
// as the stock count <s, s>. Branch-free (selects, no jumps): the signs of the weights are random, and a
// mispredicted branch per element would cost more than the memory traffic this kernel saves. g comes in by
// value, i.e. loaded unconditionally: a load under the select does not vectorize on the SSE2 baseline.
inline void step(float x, float g, float& o, float& acc, float& cnt) {
  const float pos = x > 0.f ? 1.f : 0.f;
  const float neg = x < 0.f ? 1.f : 0.f;
  const float gv = std::fabs(x) > 0.f ? g : 0.f;  // one compare (false for NaN): a select, not a jump
  o = gv;
  acc += gv * (pos - neg);
  cnt += pos + neg;  // exact: at most kGrain / kLanes per lane and run, far below 2^24
}

// One run of the backward over n elements; the run's sum of o * s and its count are added to dot and kept.
ADAPMTL_CLONES void backward_run(const float* __restrict__ w, const float* __restrict__ g, float* __restrict__ o,
                                 int64_t n, double* __restrict__ dot, int64_t* __restrict__ kept) {
  float acc[kLanes] = {0.f};
  float cnt[kLanes] = {0.f};
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes) {
    for (int k = 0; k < kLanes; ++k) step(w[j + k], g[j + k], o[j + k], acc[k], cnt[k]);
  }
  for (; j < n; ++j) step(w[j], g[j], o[j], acc[0], cnt[0]);
  double d = *dot;  // lane after lane onto the chunk's running sum: the order (and bits) of the v5 kernel
  int64_t c = *kept;
  for (int k = 0; k < kLanes; ++k) {
    d += static_cast<double>(acc[k]);
    c += static_cast<int64_t>(cnt[k]);
  }
  *dot = d;
  *kept = c;
}
}  // namespace

// W - clamp(W, -lam, lam) per element, layer after layer, into consecutive slices of `out`.
void threshold_into(const std::vector<at::Tensor>& weights, at::Tensor out, double lam) {
  float* base = out.data_ptr<float>();
  const float hi = static_cast<float>(lam);
  const float lo = -hi;
  int64_t offset = 0;
  for (const auto& w : weights) {
    const float* x = data_of(w);
    float* y = base + offset;
    at::parallel_for(0, w.numel(), kGrain, [&](int64_t begin, int64_t end) {
      threshold_run(x + begin, y + begin, end - begin, lo, hi);
    });
    offset += w.numel();
  }
}

// Whether every incoming gradient is what the loops index directly: a CPU float32 tensor of its layer's size,
// dense in its layer's memory order (checked here, not in Python: ~1 us per layer less per step).
bool grads_eligible(const std::vector<at::Tensor>& grads, const std::vector<bool>& channels_last,
                    const at::Tensor& w_hat) {
  if (grads.size() != channels_last.size()) return false;
  int64_t total = 0;
  for (size_t l = 0; l < grads.size(); ++l) {
    const auto& g = grads[l];
    if (!g.defined() || g.device().type() != at::kCPU || g.scalar_type() != at::kFloat) return false;
    const auto format = channels_last[l] ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
    if (!g.is_contiguous(format)) return false;
    total += g.numel();
  }
  return total == w_hat.numel();
}

// grad_out = g * 1[w_hat != 0] (+0 where pruned); returns (sum of grad_out * sign(w_hat), count of w_hat != 0),
// or (NaN, -1) without touching grad_out when a gradient is not eligible (the caller takes the stock ops).
std::tuple<double, int64_t> backward_into(const std::vector<at::Tensor>& grads, at::Tensor w_hat,
                                          at::Tensor grad_out, const std::vector<bool>& channels_last) {
  if (!grads_eligible(grads, channels_last, w_hat)) return std::make_tuple(std::nan(""), int64_t{-1});
  const float* h = w_hat.data_ptr<float>();
  float* out = grad_out.data_ptr<float>();
  const int64_t total = w_hat.numel();
  const int64_t chunks = (total + kGrain - 1) / kGrain;
  std::vector<double> dots(static_cast<size_t>(chunks), 0.0);
  std::vector<int64_t> counts(static_cast<size_t>(chunks), 0);
  // the chunk grid is over the whole flat buffer; each chunk reads the layers' gradients it overlaps
  std::vector<int64_t> starts;
  std::vector<const float*> gptr;
  starts.reserve(grads.size() + 1);
  int64_t offset = 0;
  for (const auto& g : grads) {
    starts.push_back(offset);
    gptr.push_back(data_of(g));
    offset += g.numel();
  }
  starts.push_back(offset);
  at::parallel_for(0, chunks, 1, [&](int64_t cb, int64_t ce) {
    for (int64_t c = cb; c < ce; ++c) {
      const int64_t begin = c * kGrain;
      const int64_t end = std::min(total, begin + kGrain);
      size_t layer = static_cast<size_t>(std::upper_bound(starts.begin(), starts.end(), begin) - starts.begin() - 1);
      double dot = 0.0;
      int64_t kept = 0;
      int64_t i = begin;
      while (i < end) {  // one run per layer the chunk overlaps
        while (starts[layer + 1] <= i) ++layer;
        const int64_t n = std::min(end, starts[layer + 1]) - i;
        backward_run(h + i, gptr[layer] + (i - starts[layer]), out + i, n, &dot, &kept);
        i += n;
      }
      dots[static_cast<size_t>(c)] = dot;
      counts[static_cast<size_t>(c)] = kept;
    }
  });
  double dot = 0.0;
  int64_t kept = 0;
  for (int64_t c = 0; c < chunks; ++c) {  // fixed order: the same bits for any thread count
    dot += dots[static_cast<size_t>(c)];
    kept += counts[static_cast<size_t>(c)];
  }
  return std::make_tuple(dot, kept);
}
"""

_log = logging.getLogger(__name__)
_module: Any = None
_tried = False


def _enabled() -> bool:
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "false", "no", "off")


def load(*, verbose: bool = False) -> Any:
    """The compiled kernel module (built on first use, then loaded from torch's cache), or None."""
    global _module, _tried
    if not _enabled():
        return None
    if _tried:
        return _module
    _tried = True
    try:
        quiet = logging.getLogger("torch.utils.cpp_extension")
        level = quiet.level
        quiet.setLevel(logging.ERROR)  # its import notes the missing CUDA runtime of a CPU machine
        try:
            from torch.utils.cpp_extension import load_inline
        finally:
            quiet.setLevel(level)
        _module = load_inline(name=_NAME, cpp_sources=[_SOURCE], functions=["threshold_into", "backward_into"],
                              extra_cflags=["-O3"], verbose=verbose)
    except Exception as exc:  # no compiler, no ninja, a read-only cache: the stock ops serve instead
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        _log.warning("AdapMTL's fused CPU kernel is unavailable (%s); using stock torch ops", first[:200])
        _module = None
    return _module


def available() -> bool:
    """Whether the kernel is (or can be) loaded in this process."""
    return load() is not None


def threshold_into(weights: Sequence[Tensor], out: Tensor, lam: float) -> None:
    """``out[slice_l] = W_l − clamp(W_l, −λ, λ)`` in memory order (see the module doc). Per step: callers
    have checked ``available()`` once, so the module is used as loaded."""
    _module.threshold_into(list(weights), out, float(lam))


def backward_into(grads: Sequence[Tensor], w_hat: Tensor, grad_out: Tensor,
                  channels_last: Sequence[bool]) -> tuple[float, int] | None:
    """``grad_out = g·1[Ŵ ≠ 0]``; returns ``(Σ grad_out·sign(Ŵ), #(Ŵ ≠ 0))`` (see the module doc), or None,
    with nothing written, when an incoming gradient is not a CPU float32 tensor dense in its layer's memory
    order (``channels_last`` per layer): the caller then takes the stock ops."""
    dot, kept = _module.backward_into(list(grads), w_hat, grad_out, list(channels_last))
    return None if kept < 0 else (dot, kept)


def main() -> int:
    """``python -m trainers.soft_threshold_kernel``: build (or load) the kernel and say which; always 0."""
    import sys

    if not _enabled():
        print(f"adapmtl: fused CPU kernel off ({ENV_SWITCH}=0); AdapMTL uses stock torch ops", file=sys.stderr)
        return 0
    module = load()
    if module is None:
        print("adapmtl: fused CPU kernel unavailable (see the warning above); AdapMTL uses stock torch ops",
              file=sys.stderr)
    else:
        print(f"adapmtl: fused CPU kernel ready ({module.__file__})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
