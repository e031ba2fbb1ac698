"""The paper's nine models (Table 2), all returning logits over gathered embedding rows.

Every model reads rows [U, P] (the trainable part of the embedding rows the
batch touches) and a `SparseBatch`, and returns logits [B]; the loss (binary
cross-entropy with logits) is the trainer's business, never the model's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from model.layers import (
    Shape,
    SparseBatch,
    fm_interaction,
    hidden_sizes,
    inner_products,
    linear_term,
    outer_product_superposition,
    pooled,
)
from model.mlp import MLP, Activation

PAPER_NAMES = {
    "lr": "LR",
    "fm": "FM",
    "fnn": "FNN",
    "ipnn": "IPNN",
    "opnn": "OPNN",
    "pnn_star": "PNN*",
    "lr_dnn": "LR&DNN",
    "fm_dnn": "FM&DNN",
    "deepfm": "DeepFM",
}
ALIASES = {"pnn*": "pnn_star", "lr&dnn": "lr_dnn", "widedeep": "lr_dnn", "fm&dnn": "fm_dnn"}


def canonical_name(name: str) -> str:
    key = ALIASES.get(name.lower(), name.lower())
    if key not in PAPER_NAMES:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(PAPER_NAMES)}")
    return key


@dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters of section 3.3; defaults are the paper's settings.

    `dropout_keep` is the paper's dropout: the probability that a neuron is
    KEPT (torch's `Dropout(p)` takes the probability of dropping, 1 - keep).
    `activation=None` means the paper's choice: tanh for IPNN, relu otherwise.
    """

    name: str = "deepfm"
    k: int = 10
    hidden_layers: int = 3
    neurons: int = 400
    shape: Shape = "constant"
    activation: Activation | None = None
    dropout_keep: float = 0.5
    fnn_pretrain_examples: int = 200_000

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", canonical_name(self.name))
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")
        if not 0.0 < self.dropout_keep <= 1.0:
            raise ValueError(f"dropout_keep must be in (0, 1], got {self.dropout_keep}")

    @property
    def paper_name(self) -> str:
        return PAPER_NAMES[self.name]

    def resolved_activation(self) -> Activation:
        return self.activation or ("tanh" if self.name == "ipnn" else "relu")


class CTRModel(nn.Module):
    """`linear` (0/1) order-1 weights and `vectors` latent vectors of size k per row."""

    linear: ClassVar[int] = 1
    vectors: ClassVar[int] = 1

    def __init__(self, config: ModelConfig, num_fields: int, generator: torch.Generator) -> None:
        super().__init__()
        self.k = config.k
        self.num_fields = num_fields
        self.bias = nn.Parameter(torch.zeros(1))

    @property
    def pretraining(self) -> bool:
        """Whether the model still predicts with a stand-in (FNN: its FM)."""
        return False

    def auxiliary_loss(self, labels: torch.Tensor) -> torch.Tensor | None:
        """A loss to learn beside the last training forward's (FNN: its DNN while the FM
        pre-trains); None for most models."""
        return None

    def split(self, rows: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """[U, P] -> order-1 weights [U] (zeros if none) and each latent table [U, k]."""
        w = rows[:, 0] if self.linear else rows.new_zeros(rows.shape[0])
        start = self.linear
        tables = [
            rows[:, start + i * self.k : start + (i + 1) * self.k] for i in range(self.vectors)
        ]
        return w, tables

    def dense_flops_per_example(self) -> int:
        return sum(m.flops_per_example() for m in self.modules() if isinstance(m, MLP))


def _mlp(config: ModelConfig, in_dim: int, generator: torch.Generator) -> MLP:
    sizes = hidden_sizes(config.hidden_layers, config.neurons, config.shape)
    return MLP(in_dim, sizes, config.resolved_activation(), config.dropout_keep, generator)


class LR(CTRModel):
    vectors = 0

    def forward(self, rows: torch.Tensor, batch: SparseBatch) -> torch.Tensor:
        w, _ = self.split(rows)
        return self.bias + linear_term(w, batch)


class FM(CTRModel):
    def forward(self, rows: torch.Tensor, batch: SparseBatch) -> torch.Tensor:
        w, (v,) = self.split(rows)
        return self.bias + linear_term(w, batch) + fm_interaction(pooled(v, batch))


class DeepFM(CTRModel):
    """Eq. 1: ŷ = sigmoid(y_FM + y_DNN); FM and DNN read the same embeddings e."""

    def __init__(self, config: ModelConfig, num_fields: int, generator: torch.Generator) -> None:
        super().__init__(config, num_fields, generator)
        self.dnn = _mlp(config, num_fields * config.k, generator)

    def forward(self, rows: torch.Tensor, batch: SparseBatch) -> torch.Tensor:
        w, (v,) = self.split(rows)
        e = pooled(v, batch)  # [B, F, k], shared
        y_fm = self.bias + linear_term(w, batch) + fm_interaction(e)
        y_dnn: torch.Tensor = self.dnn(e.flatten(1))
        return y_fm + y_dnn


class LRDNN(CTRModel):
    """Wide & Deep with the wide part a linear model over the raw (one-hot) features."""

    def __init__(self, config: ModelConfig, num_fields: int, generator: torch.Generator) -> None:
        super().__init__(config, num_fields, generator)
        self.dnn = _mlp(config, num_fields * config.k, generator)

    def forward(self, rows: torch.Tensor, batch: SparseBatch) -> torch.Tensor:
        w, (v,) = self.split(rows)
        y_dnn: torch.Tensor = self.dnn(pooled(v, batch).flatten(1))
        return self.bias + linear_term(w, batch) + y_dnn


class FMDNN(CTRModel):
    """Wide & Deep with an FM wide part whose embeddings are separate from the DNN's."""

    vectors = 2

    def __init__(self, config: ModelConfig, num_fields: int, generator: torch.Generator) -> None:
        super().__init__(config, num_fields, generator)
        self.dnn = _mlp(config, num_fields * config.k, generator)

    def forward(self, rows: torch.Tensor, batch: SparseBatch) -> torch.Tensor:
        w, (v_fm, v_dnn) = self.split(rows)
        y_fm = self.bias + linear_term(w, batch) + fm_interaction(pooled(v_fm, batch))
        y_dnn: torch.Tensor = self.dnn(pooled(v_dnn, batch).flatten(1))
        return y_fm + y_dnn


class FNN(CTRModel):
    """Zhang et al. 2016: an FM pre-trains the field vectors z_f = (w_f, e_f), then
    a DNN over them predicts alone (and fine-tunes them). The DNN's output adds the
    global bias, which pre-training has already brought to the base rate.

    The switch: during pre-training the DNN learns beside the FM on the detached
    field vectors (pre-training moves only the FM), both scored (without dropout)
    on each batch before learning it; once the DNN's loss, smoothed over about 20
    batches, is below the FM's, it takes over, whatever the log's length. At the
    latest it does after `fnn_pretrain_examples`."""

    SMOOTHING: ClassVar[float] = 0.05
    MIN_BATCHES: ClassVar[int] = 20

    def __init__(self, config: ModelConfig, num_fields: int, generator: torch.Generator) -> None:
        super().__init__(config, num_fields, generator)
        self.pretrain_examples = config.fnn_pretrain_examples
        self.dnn = _mlp(config, num_fields * (config.k + 1), generator)
        self.seen: torch.Tensor
        self.batches: torch.Tensor
        self.losses: torch.Tensor
        self.switched: torch.Tensor
        self.register_buffer("seen", torch.zeros((), dtype=torch.int64))
        self.register_buffer("batches", torch.zeros((), dtype=torch.int64))
        self.register_buffer("losses", torch.zeros(2))  # smoothed: FM, DNN
        self.register_buffer("switched", torch.zeros((), dtype=torch.bool))
        # The last training forward's FM logits, DNN logits, and DNN logits without dropout.
        self._shadow: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    @property
    def pretraining(self) -> bool:
        return not bool(self.switched) and int(self.seen) < self.pretrain_examples

    def forward(self, rows: torch.Tensor, batch: SparseBatch) -> torch.Tensor:
        pretraining = self.pretraining
        if self.training:
            self.seen += batch.batch_size
        if not pretraining:
            out: torch.Tensor = self.bias + self.dnn(pooled(rows, batch).flatten(1))
            return out
        w, (v,) = self.split(rows)
        fm = self.bias + linear_term(w, batch) + fm_interaction(pooled(v, batch))
        if self.training:
            z = pooled(rows.detach(), batch).flatten(1)
            with torch.no_grad():
                self.dnn.eval()
                scored = self.bias + self.dnn(z)
                self.dnn.train()
            self._shadow = (fm.detach(), self.bias.detach() + self.dnn(z), scored)
        return fm

    def auxiliary_loss(self, labels: torch.Tensor) -> torch.Tensor | None:
        if self._shadow is None:
            return None
        fm, dnn, scored = self._shadow
        self._shadow = None
        dnn_loss = F.binary_cross_entropy_with_logits(dnn, labels)
        with torch.no_grad():
            now = torch.stack(
                [
                    F.binary_cross_entropy_with_logits(fm, labels),
                    F.binary_cross_entropy_with_logits(scored, labels),
                ]
            )
            if int(self.batches) == 0:
                self.losses.copy_(now)
            self.losses.lerp_(now, self.SMOOTHING)
            self.batches += 1
            if int(self.batches) >= self.MIN_BATCHES and bool(self.losses[1] < self.losses[0]):
                self.switched.fill_(True)
        return dnn_loss


class PNN(CTRModel):
    """Product layer (Qu et al. 2016) between embeddings and the DNN: linear signals
    (the embeddings) plus inner and/or outer products; no order-1 term."""

    linear = 0
    inner: ClassVar[bool] = True
    outer: ClassVar[bool] = False

    def __init__(self, config: ModelConfig, num_fields: int, generator: torch.Generator) -> None:
        super().__init__(config, num_fields, generator)
        width = num_fields * config.k
        if self.inner:
            width += num_fields * (num_fields - 1) // 2
        if self.outer:
            width += config.k * config.k
        self.dnn = _mlp(config, width, generator)

    def forward(self, rows: torch.Tensor, batch: SparseBatch) -> torch.Tensor:
        _, (v,) = self.split(rows)
        e = pooled(v, batch)
        parts = [e.flatten(1)]
        if self.inner:
            parts.append(inner_products(e))
        if self.outer:
            parts.append(outer_product_superposition(e))
        out: torch.Tensor = self.bias + self.dnn(torch.cat(parts, dim=1))
        return out


class IPNN(PNN):
    pass


class OPNN(PNN):
    inner = False
    outer = True


class PNNStar(PNN):
    outer = True


MODELS: dict[str, type[CTRModel]] = {
    "lr": LR,
    "fm": FM,
    "fnn": FNN,
    "ipnn": IPNN,
    "opnn": OPNN,
    "pnn_star": PNNStar,
    "lr_dnn": LRDNN,
    "fm_dnn": FMDNN,
    "deepfm": DeepFM,
}


def build_model(config: ModelConfig, num_fields: int, seed: int, device: torch.device) -> CTRModel:
    """A model with dense weights initialized from `seed`, leaving torch's global RNG alone."""
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MODELS[config.name](config, num_fields, generator)
    return model.to(device)
