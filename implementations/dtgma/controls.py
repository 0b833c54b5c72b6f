"""Isolation controls with a task-id oracle (spec §5.4 item 3), and the collapsed form of DTG-MA (§1.3).

If these score the same accuracy and the same 0.0 forgetting as DTG-MA, the zero forgetting comes
from per-task parameters plus the task id, not from the attention masks.
"""

from __future__ import annotations

import torch
from torch import nn

from implementations.common.models import MLP, TaskConditioned
from implementations.dtgma.model import DTGMAModel, task_ffn


class IndependentMLPs(TaskConditioned):
    """One independent MLP per task (input -> 256 -> 256 -> C), chosen by the task id."""

    def __init__(self, input_dim: int, num_classes: int, n_tasks: int, hidden: tuple[int, ...] = (256, 256)):
        super().__init__()
        self.networks = nn.ModuleList(MLP(input_dim, hidden, num_classes) for _ in range(n_tasks))

    def forward(self, x: torch.Tensor, task_id: int) -> torch.Tensor:
        return self.networks[task_id](x)

    def task_parameters(self, task_id: int) -> list[nn.Parameter]:
        return list(self.networks[task_id].parameters())


class ResidualBlock(nn.Module):
    """h + A LN(h) + c, then h + FFN(LN(h)): DTG-MA's eval-mode block without Q, K or a mask."""

    def __init__(self, d_model: int, dropout: float):
        super().__init__()
        self.linear = nn.Linear(d_model, d_model)
        self.dropout = nn.Dropout(dropout)
        self.ffn = task_ffn(d_model, 4 * d_model, dropout)

    def forward(self, h: torch.Tensor, norm: nn.LayerNorm) -> torch.Tensor:
        h = h + self.dropout(self.linear(norm(h)))
        return h + self.ffn(norm(h))


class RandomProjectionResiduals(TaskConditioned):
    """A frozen random projection, non-affine LayerNorm, and a per-task 2-block residual MLP and head."""

    def __init__(self, input_dim: int, num_classes: int, n_tasks: int, d_model: int = 256, n_layers: int = 2,
                 dropout: float = 0.1):
        super().__init__()
        self.projection = nn.Linear(input_dim, d_model).requires_grad_(False)
        self.norm = nn.LayerNorm(d_model, elementwise_affine=False)
        self.blocks = nn.ModuleList(
            nn.ModuleList(ResidualBlock(d_model, dropout) for _ in range(n_layers)) for _ in range(n_tasks))
        self.heads = nn.ModuleList(nn.Linear(d_model, num_classes) for _ in range(n_tasks))

    def forward(self, x: torch.Tensor, task_id: int) -> torch.Tensor:
        h = self.projection(x)
        for block in self.blocks[task_id]:
            h = block(h, self.norm)
        return self.heads[task_id](h)

    def task_parameters(self, task_id: int) -> list[nn.Parameter]:
        return [*self.blocks[task_id].parameters(), *self.heads[task_id].parameters()]


@torch.no_grad()
def collapsed_forward(model: DTGMAModel, x: torch.Tensor, task_id: int) -> torch.Tensor:
    """Eval-mode DTG-MA for one task with attention replaced by the linear map W_O (W_V u + b_V) + b_O.

    No W_Q, W_K, softmax or mask is read: spec §1.3's "consequence of S = 1".
    """
    key = str(task_id)
    h = model.input_projection(x)
    for layer in model.layers:
        attention = layer.attention[key]
        h = h + attention.output(attention.value(layer.norm_attention(h)))
        h = h + layer.ffn[key](layer.norm_ffn(h))
    return model.heads[key](h)
