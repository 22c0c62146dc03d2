"""Seed 000, example 3 (Masking + LSTM), and seed 004's closing advice, rewritten with masknn.

The article zeroes random timesteps and relies on ``Masking(mask_value=0.0)``; its input
has no batch dimension (``(10, 20)`` where Keras expects ``(N, 10, 20)``). Here the holes
hold NaN, which Keras' Masking cannot detect (NaN != NaN) but masknn's can, and the
LSTM skips masked steps and carries its state over (Keras semantics) at the speed of the
fused kernel.

Run: python examples/seed000_masking_lstm.py
"""

from __future__ import annotations

import torch
from torch import nn

from masknn import nn as mnn


class Classifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.masking = mnn.MaskFromValue(float("nan"))
        self.lstm = mnn.MaskedLSTM(20, 64, batch_first=True)
        self.head = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, (h_n, _) = self.lstm(self.masking(x))
        return self.head(h_n[-1])  # state after each sequence's last valid step


def main() -> None:
    torch.manual_seed(0)
    input_seq = torch.rand(4, 10, 20)  # (N, T, F): 4 sequences of 10 steps
    keep = torch.rand(4, 10, 1) > 0.5  # random missing timesteps (holes anywhere)
    input_seq = torch.where(keep, input_seq, torch.tensor(float("nan")))
    model = Classifier()
    logits = model(input_seq)
    print("logits", tuple(logits.shape), "finite:", bool(torch.isfinite(logits).all()))
    loss = nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2, 3]))
    loss.backward()
    print(
        f"loss {loss.item():.3f}; all gradients finite:",
        all(bool(torch.isfinite(p.grad).all()) for p in model.parameters() if p.grad is not None),
    )
    # The same LSTM weights load into nn.LSTM and back.
    plain = nn.LSTM(20, 64, batch_first=True)
    plain.load_state_dict(model.lstm.state_dict())
    print("state_dict loads into nn.LSTM: ok")


if __name__ == "__main__":
    main()
