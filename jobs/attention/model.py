"""One softmax-attention layer ``f(X_i) = v^T X_i^T softmax(X_i W z_i)`` and its training loss.

``W`` is trained either directly (``param="W"``) or as ``W = K Q^T`` (``param="KQ"``); the head
``v`` is fixed or trainable. The loss is ``mean_i l(y_i f(X_i))`` with ``l`` logistic or
exponential. The prediction margin is computed as ``gamma_opt - sum_{t != opt} (gamma_opt -
gamma_t) s_t`` so that it stays exact when attention is almost one-hot (s_t far below machine
epsilon for t != opt): the directional convergence happens precisely in that regime.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from jobs.attention.data import TokenSelectionData

LOSSES = ("logistic", "exp")
PARAMS = ("W", "KQ")
HEADS = ("fixed", "trainable")


@dataclass(frozen=True)
class Forward:
    """One forward pass: the loss (differentiable), its excess over the infimum (``mean_i
    l(gamma_opt_i)`` with a fixed head, 0 with a trainable one) and the mean attention on the
    optimal tokens."""

    loss: torch.Tensor
    gap: torch.Tensor
    opt_attention: torch.Tensor


class AttentionModel:
    """Trainable tensors of the layer plus the dataset it is fit to (float64 on ``device``)."""

    def __init__(
        self,
        data: TokenSelectionData,
        *,
        param: str,
        head: str,
        loss: str,
        rank: int,
        init_scale: float,
        seed: int,
        device: torch.device,
    ) -> None:
        if param not in PARAMS or head not in HEADS or loss not in LOSSES:
            raise ValueError(
                f"param must be one of {PARAMS}, head one of {HEADS}, loss one of {LOSSES}; "
                f"got param={param!r}, head={head!r}, loss={loss!r}"
            )
        as_tensor = torch.as_tensor
        kw = {"dtype": torch.float64, "device": device}
        self.X = as_tensor(data.X, **kw)
        self.z = as_tensor(data.z, **kw)
        self.y = as_tensor(data.y, **kw)
        self.opt = as_tensor(data.opt, dtype=torch.long, device=device)
        self.loss_name = loss
        self.factorised = param == "KQ"
        self.head_trainable = head == "trainable"
        gen = torch.Generator().manual_seed(seed)
        d = data.d
        shapes = [(d, rank), (d, rank)] if self.factorised else [(d, d)]
        self.params = [
            (init_scale * torch.randn(shape, generator=gen, dtype=torch.float64)).to(device)
            for shape in shapes
        ]
        self.v = as_tensor(data.v, **kw).clone()
        if self.head_trainable:
            self.params.append(self.v)
        for tensor in self.params:
            tensor.requires_grad_(True)
        self._not_opt = torch.ones(data.n, data.T, dtype=torch.bool, device=device)
        self._not_opt[torch.arange(data.n), self.opt] = False

    def W(self) -> torch.Tensor:
        """The combined key-query matrix ``W`` (d, d)."""
        return self.params[0] @ self.params[1].T if self.factorised else self.params[0]

    def forward(self) -> Forward:
        """Evaluate the layer on the whole dataset."""
        rows = torch.arange(self.X.shape[0], device=self.X.device)
        keys = self.z @ self.W().T  # row i is W z_i
        logits = torch.bmm(self.X, keys.unsqueeze(-1)).squeeze(-1)
        log_s = torch.log_softmax(logits, dim=1)
        gamma = self.y[:, None] * (self.X @ self.v)
        gamma_opt = gamma[rows, self.opt]
        others = torch.where(self._not_opt, log_s.exp(), torch.zeros_like(log_s))
        shortfall = ((gamma_opt[:, None] - gamma) * others).sum(dim=1)
        margin = gamma_opt - shortfall
        if self.loss_name == "logistic":
            loss = torch.nn.functional.softplus(-margin).mean()
        else:
            loss = torch.exp(-margin).mean()
        with torch.no_grad():
            gap = loss.detach() if self.head_trainable else self._excess(gamma_opt, shortfall)
            opt_attention = log_s[rows, self.opt].exp().mean()
        return Forward(loss=loss, gap=gap, opt_attention=opt_attention)

    def _excess(self, gamma_opt: torch.Tensor, shortfall: torch.Tensor) -> torch.Tensor:
        """``mean_i l(gamma_opt - shortfall) - l(gamma_opt)`` without cancellation.

        With a fixed head the loss is bounded below by ``mean_i l(gamma_opt_i)`` (all attention
        on the optimal token), approached only as ``||W|| -> inf``.
        """
        if self.loss_name == "logistic":
            return torch.log1p(torch.sigmoid(-gamma_opt) * torch.expm1(shortfall)).mean()
        return (torch.exp(-gamma_opt) * torch.expm1(shortfall)).mean()
