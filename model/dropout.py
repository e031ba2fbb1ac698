"""The paper's dropout (a keep probability), seeded per layer, and on CPU the
relu and the dropout of a hidden layer in one compiled pass."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from model.kernels import relu_keep

# Row b holds the bits of the byte b, most significant first, as 0.0 / 1.0.
_BIT_TABLE = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).astype(np.float32)


class KeepDropout(nn.Module):
    """Dropout masks given the paper's keep probability, from the layer's own seeded
    generator so that models trained side by side stay deterministic.

    On CPU the masks come from numpy's PCG64: torch's CPU bernoulli_ costs about
    a third of a DeepFM step. At the paper's keep probability 0.5 a mask is one
    random bit per neuron; any other probability compares 16-bit integers, so it
    is a multiple of 1/65536 and the scale matches it exactly.
    """

    def __init__(self, keep_prob: float, generator: torch.Generator, seed: int) -> None:
        super().__init__()
        if not 0.0 < keep_prob <= 1.0:
            raise ValueError(f"dropout keep probability must be in (0, 1], got {keep_prob}")
        self.keep_prob = keep_prob
        self.generator = generator
        self._rng = np.random.default_rng(seed)
        self._threshold = max(1, round(keep_prob * 65536))
        self.scale = 65536 / self._threshold
        self._bit_table = _BIT_TABLE * np.float32(self.scale)

    @property
    def active(self) -> bool:
        """Whether this step drops anything (training, keep probability below 1)."""
        return self.training and self.keep_prob < 1.0

    def mask(self, shape: torch.Size, device: torch.device) -> torch.Tensor | None:
        """This step's float mask: `scale` where a neuron is kept, 0 where it is
        dropped; None when nothing drops (evaluation, or keep probability 1)."""
        if not self.active:
            return None
        if device.type != "cpu":
            keep = torch.empty(shape, device=device).bernoulli_(
                self._threshold / 65536, generator=self.generator
            )
            return keep.mul_(self.scale)
        n = shape.numel()
        if self._threshold == 32768:
            # One byte of random bits -> eight mask values in a single table lookup.
            random = self._words(n).astype("<u8", copy=False).view(np.uint8)
            values = np.take(self._bit_table, random, axis=0).reshape(-1)[:n]
        else:
            parts = self._words(16 * n).astype("<u8", copy=False).view("<u2")[:n]
            values = (parts < self._threshold).astype(np.float32) * np.float32(self.scale)
        return torch.from_numpy(values).view(shape)

    def _words(self, bits: int) -> np.ndarray:
        """The next uint64 random words holding at least `bits` bits: the generator's
        raw output: the bits `bytes` gives for a whole number of words, 3x faster."""
        raw: np.ndarray = self._rng.bit_generator.random_raw((bits + 63) // 64)
        return raw

    def relu_(self, h: torch.Tensor, bias: torch.Tensor) -> None:
        """h <- dropout(relu(h + bias)) in place for h [B, H] and bias [H], with the
        mask `mask` would have drawn.

        At keep probability 0.5 on CPU no mask is made: the bias, the relu and the
        random bits are applied in one pass as the bits are read (a float mask and
        a pass per operation cost ~3x as much; adding the bias in the matmul
        costs a pass of its own). The backward needs no mask either: a neuron
        passes gradient exactly where its output is positive."""
        if self.active and self._threshold == 32768 and h.device.type == "cpu":
            flat = h.view(-1).numpy()
            words = self._words(len(flat))  # the words `mask` draws
            relu_keep(flat, bias.detach().numpy(), words, np.float32(self.scale))
            return
        h.add_(bias).clamp_min_(0.0)
        mask = self.mask(h.shape, h.device)
        if mask is not None:
            h.mul_(mask)

    def rng_state(self) -> dict[str, Any]:
        """Where this layer's masks stand (CPU and device generators), for a checkpoint:
        a resumed trainer draws the masks an uninterrupted one would have."""
        return {"numpy": self._rng.bit_generator.state, "torch": self.generator.get_state()}

    def set_rng_state(self, state: dict[str, Any]) -> None:
        self._rng.bit_generator.state = state["numpy"]
        self.generator.set_state(state["torch"])
