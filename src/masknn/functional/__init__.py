"""Functional masked ops: each takes ``(x, mask, ...)`` and returns a :class:`masknn.Masked`.

Exceptions, by design: :func:`fill` returns a plain tensor (it is the exit to
plain layers) and the losses return plain tensors.
"""

from masknn.functional.attention import masked_scaled_dot_product_attention
from masknn.functional.fill import fill, mask_channel
from masknn.functional.losses import (
    masked_binary_cross_entropy_with_logits,
    masked_cross_entropy,
    masked_l1_loss,
    masked_mse_loss,
    masked_smooth_l1_loss,
)
from masknn.functional.recurrent import masked_gru, masked_lstm, masked_rnn
from masknn.functional.reductions import (
    masked_log_softmax,
    masked_logsumexp,
    masked_max,
    masked_mean,
    masked_min,
    masked_softmax,
    masked_std,
    masked_sum,
    masked_var,
)
from masknn.functional.temporal_pool import masked_temporal_pool
from masknn.functional.time_distributed import time_distributed_linear

__all__ = [
    "fill",
    "mask_channel",
    "masked_binary_cross_entropy_with_logits",
    "masked_cross_entropy",
    "masked_gru",
    "masked_l1_loss",
    "masked_log_softmax",
    "masked_logsumexp",
    "masked_lstm",
    "masked_max",
    "masked_mean",
    "masked_min",
    "masked_mse_loss",
    "masked_rnn",
    "masked_scaled_dot_product_attention",
    "masked_smooth_l1_loss",
    "masked_softmax",
    "masked_std",
    "masked_sum",
    "masked_temporal_pool",
    "masked_var",
    "time_distributed_linear",
]
