"""Functional masked ops: each takes ``(x, mask, ...)`` and returns a [`masknn.Masked`][].

Exceptions, by design: [`fill`][masknn.functional.fill.fill] returns a plain tensor (it is the exit to
plain layers) and the losses return plain tensors."""

from masknn.functional.attention import masked_scaled_dot_product_attention
from masknn.functional.combine import masked_add, masked_cat, masked_mul
from masknn.functional.conv import (
    partial_conv1d,
    partial_conv2d,
    partial_conv3d,
    partial_conv_transpose1d,
    partial_conv_transpose2d,
    partial_conv_transpose3d,
)
from masknn.functional.embedding import masked_embedding
from masknn.functional.fill import fill, mask_channel
from masknn.functional.linear import masked_flatten, masked_linear
from masknn.functional.losses import (
    masked_binary_cross_entropy_with_logits,
    masked_cross_entropy,
    masked_l1_loss,
    masked_mse_loss,
    masked_smooth_l1_loss,
)
from masknn.functional.normalization import (
    masked_batch_norm,
    masked_group_norm,
    masked_instance_norm,
    masked_layer_norm,
)
from masknn.functional.pooling import (
    masked_adaptive_avg_pool1d,
    masked_adaptive_avg_pool2d,
    masked_adaptive_avg_pool3d,
    masked_adaptive_max_pool1d,
    masked_adaptive_max_pool2d,
    masked_adaptive_max_pool3d,
    masked_avg_pool1d,
    masked_avg_pool2d,
    masked_avg_pool3d,
    masked_global_avg_pool,
    masked_global_max_pool,
    masked_max_pool1d,
    masked_max_pool2d,
    masked_max_pool3d,
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
from masknn.functional.sync_batch_norm import masked_sync_batch_norm
from masknn.functional.temporal_pool import masked_temporal_pool
from masknn.functional.time_distributed import time_distributed_linear
from masknn.functional.transformer import masked_transformer_encoder_layer
from masknn.functional.upsample import masked_interpolate

__all__ = [
    "fill",
    "mask_channel",
    "masked_adaptive_avg_pool1d",
    "masked_adaptive_avg_pool2d",
    "masked_adaptive_avg_pool3d",
    "masked_adaptive_max_pool1d",
    "masked_adaptive_max_pool2d",
    "masked_adaptive_max_pool3d",
    "masked_add",
    "masked_avg_pool1d",
    "masked_avg_pool2d",
    "masked_avg_pool3d",
    "masked_batch_norm",
    "masked_binary_cross_entropy_with_logits",
    "masked_cat",
    "masked_cross_entropy",
    "masked_embedding",
    "masked_flatten",
    "masked_global_avg_pool",
    "masked_global_max_pool",
    "masked_group_norm",
    "masked_gru",
    "masked_instance_norm",
    "masked_interpolate",
    "masked_l1_loss",
    "masked_layer_norm",
    "masked_linear",
    "masked_log_softmax",
    "masked_logsumexp",
    "masked_lstm",
    "masked_max",
    "masked_max_pool1d",
    "masked_max_pool2d",
    "masked_max_pool3d",
    "masked_mean",
    "masked_min",
    "masked_mse_loss",
    "masked_mul",
    "masked_rnn",
    "masked_scaled_dot_product_attention",
    "masked_smooth_l1_loss",
    "masked_softmax",
    "masked_std",
    "masked_sum",
    "masked_sync_batch_norm",
    "masked_temporal_pool",
    "masked_transformer_encoder_layer",
    "masked_var",
    "partial_conv1d",
    "partial_conv2d",
    "partial_conv3d",
    "partial_conv_transpose1d",
    "partial_conv_transpose2d",
    "partial_conv_transpose3d",
    "time_distributed_linear",
]
