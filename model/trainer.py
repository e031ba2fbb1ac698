"""The online trainer: `predict_proba_many` and `learn_many` over encoded batches.

One step reads top to bottom: gather the rows the batch touches, forward,
loss, backward, dense Adam step, per-row optimizer step, write the rows back.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from model.dense_optim import dense_optimizer
from model.dropout import KeepDropout
from model.embeddings import EmbeddingSource, InMemoryEmbeddings
from model.errors import ModelError
from model.features import EncodedBatch
from model.grouping import unique_entries
from model.layers import SparseBatch, first_examples
from model.row_layout import RowLayout
from model.sparse_optim import SparseOptimizer, SplitRows, make_sparse_optimizer
from model.zoo import MODELS, CTRModel, ModelConfig, build_model

# The CSR layout is marked beta; the one operation used here (CSR @ dense) is not.
warnings.filterwarnings("ignore", "Sparse CSR tensor support is in beta", UserWarning)


BOUND_SAMPLE = 128


@dataclass(frozen=True)
class TrainerConfig:
    """Optimizers and placement.

    `sparse_optimizer=None` means FTRL for order-1 weights (LR's, and those of
    every model that has them: its per-coordinate schedule and L1 keep a weight
    at zero until its evidence outweighs noise) and Adagrad for latent vectors
    (`sparse_lr`, `sparse_l2` and `sparse_initial_accumulator` are its; for LR,
    `sparse_lr` is FTRL's alpha). A name applies that optimizer to whole rows.

    `max_logit_step` bounds how far one step may move the batch's own logits
    (root mean square; 0: unbounded) in models with latent vectors, by scaling
    the rows' step: per-row adaptive steps are each about the rate whatever the
    gradient, so with many fields they add up along the direction all vectors
    share, and the FM term shoots past the bias (docs/ARCHITECTURE.md: Model
    quality). LR's FTRL needs no bound.
    """

    dense_lr: float = 1e-3
    bias_lr: float = 0.01
    sparse_optimizer: str | None = None
    sparse_lr: float | None = None
    sparse_l2: float = 0.0
    sparse_initial_accumulator: float = 0.1
    max_logit_step: float = 0.2
    init_std: float = 0.01
    device: str = "auto"
    seed: int = 0


def resolve_device(name: str) -> torch.device:
    """ "auto" (CUDA when present), "cpu", "cuda" or "cuda:N"; ModelError otherwise, or
    when CUDA is asked for on a machine without it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name != "cpu" and not re.fullmatch(r"cuda(:[0-9]+)?", name):
        raise ModelError(f"device must be auto, cpu, cuda or cuda:N, got {name!r}")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError(f"device {name!r} asked for, but torch sees no CUDA device here")
    return torch.device(name)


def row_optimizer(model: ModelConfig, trainer: TrainerConfig) -> SparseOptimizer:
    cls = MODELS[model.name]

    def configured(name: str) -> SparseOptimizer:
        return make_sparse_optimizer(
            name, trainer.sparse_lr, trainer.sparse_l2, trainer.sparse_initial_accumulator
        )

    if trainer.sparse_optimizer:
        return configured(trainer.sparse_optimizer)
    if not cls.vectors:
        return configured("ftrl")
    if not cls.linear:
        return configured("adagrad")
    return SplitRows(cls.linear, make_sparse_optimizer("ftrl"), configured("adagrad"))


def row_layout(model: ModelConfig, trainer: TrainerConfig) -> RowLayout:
    cls = MODELS[model.name]
    optimizer = row_optimizer(model, trainer)
    return RowLayout(cls.linear, cls.vectors, model.k, optimizer, trainer.init_std)


class IdFilter(Protocol):
    """Decides which id an entry reads (e.g. admission: a shared row until an id is
    frequent enough); `count` is true when learning, false when scoring."""

    def __call__(self, ids: np.ndarray, fields: np.ndarray, count: bool) -> np.ndarray: ...


class OnlineTrainer:
    def __init__(
        self,
        model_config: ModelConfig,
        num_fields: int,
        config: TrainerConfig = TrainerConfig(),
        source: EmbeddingSource | None = None,
        id_filter: IdFilter | None = None,
    ) -> None:
        self.config = config
        self.id_filter = id_filter
        self.model_config = model_config
        self.device = resolve_device(config.device)
        self.layout = row_layout(model_config, config)
        self.source = (
            source
            if source is not None
            else InMemoryEmbeddings(self.layout, config.seed, self.device)
        )
        if self.source.row_width != self.layout.width:
            raise ValueError(
                f"embedding source rows have width {self.source.row_width}; the model's rows "
                f"{self.layout.describe()} need {self.layout.width}"
            )
        self.model: CTRModel = build_model(model_config, num_fields, config.seed, self.device)
        self.dense_optimizer = dense_optimizer(self.model, config.dense_lr, config.bias_lr)
        self.examples_seen = 0
        self._bounded = torch.zeros((), dtype=torch.int64, device=self.device)

    @property
    def bounded_steps(self) -> int:
        """Steps whose row update `max_logit_step` scaled down."""
        return int(self._bounded)

    def state_dict(self) -> dict[str, Any]:
        """Everything dense a resumed trainer needs (the rows live in its source): the
        model's weights and buffers, Adam's state, the examples seen. Tensors and plain
        values only, for `torch.load(weights_only=True)`."""
        return {
            "model": self.model.state_dict(),
            "dense_optimizer": self.dense_optimizer.state_dict(),
            "examples_seen": self.examples_seen,
            "bounded_steps": self.bounded_steps,
            "dropout": [m.rng_state() for m in self._dropouts()],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.dense_optimizer.load_state_dict(state["dense_optimizer"])
        self.examples_seen = int(state["examples_seen"])
        self._bounded.fill_(int(state["bounded_steps"]))
        for layer, rng in zip(self._dropouts(), state["dropout"], strict=True):
            layer.set_rng_state(rng)

    def _dropouts(self) -> list[KeepDropout]:
        return [m for m in self.model.modules() if isinstance(m, KeepDropout)]

    def _gather(
        self, batch: EncodedBatch, create: bool
    ) -> tuple[torch.Tensor, torch.Tensor, SparseBatch]:
        raw = batch.ids
        if self.id_filter is not None:
            raw = self.id_filter(batch.ids, batch.slot % batch.num_fields, count=create)
        # If the filter replaced ids, this batch's own grouping does not apply.
        own = raw is batch.ids or np.array_equal(raw, batch.ids)
        entries = batch.entries if own else unique_entries(raw)
        unique = torch.from_numpy(entries.unique)
        rows = self.source.lookup(unique, create=create)
        transpose = None
        if create and self.device.type == "cpu" and self.layout.vectors:
            # Only latent vectors' gathers use it; on CUDA the default backward's
            # atomic scatter is already fast.
            x_by_id = batch.x_by_id if own else np.take(batch.x, entries.order)
            transpose = torch.sparse_csr_tensor(
                torch.from_numpy(entries.starts),
                torch.from_numpy(entries.order),
                torch.from_numpy(x_by_id),
                size=(len(entries.unique), len(batch.ids)),
                check_invariants=False,
            )
        sparse = SparseBatch(
            index=self._moved(entries.inverse),
            x=self._moved(batch.x),
            slot=self._moved(batch.slot),
            batch_size=batch.batch_size,
            num_fields=batch.num_fields,
            single_fields=batch.single_fields,
            transpose=transpose,
            unit_x=batch.unit_x,
        )
        return unique, rows, sparse

    def _moved(self, array: np.ndarray) -> torch.Tensor:
        """`array` on the trainer's device; to CUDA through pinned memory, without
        waiting for the copy (the stream orders it before the kernels that read it)."""
        tensor = torch.from_numpy(array)
        if self.device.type != "cuda":
            return tensor
        return tensor.pin_memory().to(self.device, non_blocking=True)

    @torch.no_grad()
    def _start_at_base_rate(self, labels: np.ndarray) -> None:
        # A starting point, not an estimate: the bias group's own rate corrects it.
        rate = (float(np.sum(labels)) + 1.0) / (len(labels) + 2.0)
        self.model.bias.fill_(float(np.log(rate / (1.0 - rate))))

    @torch.no_grad()
    def predict_proba_many(self, batch: EncodedBatch) -> np.ndarray:
        """Click probabilities [B] without learning; unseen ids read their initial rows."""
        if self.model.training:
            self.model.eval()
        _, rows, sparse = self._gather(batch, create=False)
        logits = self.model(rows[:, : self.layout.params], sparse)
        return torch.sigmoid(logits).cpu().numpy().astype(np.float64)

    def learn_many(self, batch: EncodedBatch, labels: np.ndarray) -> float:
        """One step on a batch; returns its mean training loss."""
        if self.examples_seen == 0:
            self._start_at_base_rate(labels)
        unique, rows, sparse = self._gather(batch, create=True)
        p = self.layout.params
        bound = self.config.max_logit_step > 0 and self.layout.vectors > 0
        # The bound is judged on a sample of the batch: two forwards of it are cheap.
        sample = first_examples(sparse, BOUND_SAMPLE) if bound else None
        before = self._logits(rows[:, :p], sample) if sample is not None else None
        if not self.model.training:
            self.model.train()
        # The leaf shares the rows' memory: nothing writes to either before backward.
        params = rows[:, :p].detach().requires_grad_(True)
        y = self._moved(np.asarray(labels, dtype=np.float32))

        logits = self.model(params, sparse)
        loss = F.binary_cross_entropy_with_logits(logits, y)
        extra = self.model.auxiliary_loss(y)
        (loss if extra is None else loss + extra).backward()  # type: ignore[no-untyped-call]
        self.dense_optimizer.step()
        self.dense_optimizer.zero_grad(set_to_none=True)

        with torch.no_grad():
            assert params.grad is not None
            # Sparse optimizers take the gradient of the summed loss (per-example semantics).
            grad = params.grad.mul_(batch.batch_size)
            old = rows[:, :p].clone() if bound else None
            self.layout.optimizer.step(rows[:, :p], rows[:, p:], grad)
            if sample is not None and before is not None and old is not None:
                self._bound_row_step(before, old, rows[:, :p], sample)
        self.source.update(unique, rows)
        self.examples_seen += batch.batch_size
        return float(loss.detach())

    @torch.no_grad()
    def _logits(self, params: torch.Tensor, sparse: SparseBatch) -> torch.Tensor:
        """The logits without dropout, as scoring sees them."""
        self.model.eval()
        out: torch.Tensor = self.model(params, sparse)
        self.model.train()
        return out

    def _bound_row_step(
        self, before: torch.Tensor, old: torch.Tensor, new: torch.Tensor, sparse: SparseBatch
    ) -> None:
        """Scales the rows' step (`old` to `new`, [U, P]) so that the whole step moves
        the logits of `sample` (`before` it) by at most `max_logit_step` rms.

        The dense step stays: Adam's is small by construction. An FTRL weight is a
        function of its state, so a scaled one holds until its row's next step."""
        rms = (self._logits(new, sparse) - before).square().mean().sqrt()
        scale = torch.clamp(self.config.max_logit_step / rms.clamp(min=1e-12), max=1.0)
        new.sub_(old).mul_(scale).add_(old)
        self._bounded += (scale < 1.0).to(torch.int64)
