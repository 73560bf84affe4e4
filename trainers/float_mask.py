"""A boolean mask's 0/1 copy in a float dtype, kept in step with the mask.

Why: on the CPU, ``torch.where(mask, x, 0)`` costs ~20× a multiply (benchmarks/RESULTS.md Q1), so the
mask parametrizations multiply by this copy there. It is rebuilt whenever the mask tensor is replaced or
changed in place (its version counter moves with ``copy_``/``fill_``/``load_state_dict``), so no update
path can leave it stale.
"""

from __future__ import annotations

import torch


class FloatMaskCache:
    """``get(mask, dtype)``: the cached ``mask.to(dtype)``, rebuilt when the mask or the dtype changed."""

    def __init__(self) -> None:
        self._value: torch.Tensor | None = None
        self._key: tuple[torch.Tensor, int, torch.dtype] | None = None

    def get(self, mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        key = self._key
        if self._value is None or key is None or key[0] is not mask or key[1] != mask._version or key[2] != dtype:
            self._value = mask.to(dtype)
            self._key = (mask, mask._version, dtype)
        return self._value
