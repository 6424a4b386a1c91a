"""MultiheadAttention, with PyTorch's parameter names, mask conventions and return values."""

from __future__ import annotations

import math

from ..._tensor import Tensor, ops
from ..._tensor.factories import empty, zeros
from ...errors import runtime_error, type_error, value_error
from .. import functional as F
from .. import init
from ..module import Module
from ..parameter import Parameter
from .linear import Linear

__all__ = ["MultiheadAttention"]


class NonDynamicallyQuantizableLinear(Linear):
    """A Linear under PyTorch's name for MultiheadAttention.out_proj, so models print alike."""


def _canonical_mask(mask: Tensor | None, name: str, dtype) -> Tensor | None:
    """A bool mask (True = masked) as an additive float mask of dtype; float masks pass."""
    if mask is None:
        return None
    if mask.dtype.name == "bool":
        return ops.masked_fill(
            zeros(tuple(mask.shape), dtype=dtype, device=mask.device), mask, float("-inf")
        )
    if not mask.is_floating_point():
        raise type_error(
            f"only bool and floating types of {name} are supported, got {mask.dtype.name}"
        )
    return mask


def _check_shapes(query, key, value, key_padding_mask, attn_mask, num_heads) -> bool:
    """Whether the input is batched; raises on shapes MultiheadAttention cannot take."""
    if query.dim() not in (2, 3):
        raise value_error(
            f"query should be unbatched 2D or batched 3D tensor but received {query.dim()}-D "
            "query tensor"
        )
    batched = query.dim() == 3
    kind, want = ("batched (3-D)", 3) if batched else ("unbatched (2-D)", 2)
    if key.dim() != want or value.dim() != want:
        raise value_error(
            f"For {kind} `query`, expected `key` and `value` to be {want}-D but found "
            f"{key.dim()}-D and {value.dim()}-D tensors respectively"
        )
    if key_padding_mask is not None and key_padding_mask.dim() != want - 1:
        raise value_error(
            f"For {kind} `query`, expected `key_padding_mask` to be `None` or {want - 1}-D but "
            f"found {key_padding_mask.dim()}-D tensor instead"
        )
    if attn_mask is not None:
        if attn_mask.dim() not in (2, 3):
            raise value_error(
                f"For {kind} `query`, expected `attn_mask` to be `None`, 2-D or 3-D but found "
                f"{attn_mask.dim()}-D tensor instead"
            )
        if not batched and attn_mask.dim() == 3:
            expected = (num_heads, query.shape[0], key.shape[0])
            if tuple(attn_mask.shape) != expected:
                raise value_error(
                    f"Expected `attn_mask` shape to be {expected} but got {tuple(attn_mask.shape)}"
                )
    return batched


class MultiheadAttention(Module):
    """Attention over num_heads heads of size embed_dim // num_heads, as torch.nn's.

    Inputs are (L, N, E), or (N, L, E) with batch_first, or unbatched (L, E). forward returns
    (output, weights): weights averaged over heads (or per head), or None when need_weights is
    False. Boolean masks mark positions that may not be attended to; float masks are added.
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        add_bias_kv: bool = False,
        add_zero_attn: bool = False,
        kdim: int | None = None,
        vdim: int | None = None,
        batch_first: bool = False,
        device=None,
        dtype=None,
    ) -> None:
        if embed_dim <= 0 or num_heads <= 0:
            raise value_error(
                f"embed_dim and num_heads must be greater than 0, got embed_dim={embed_dim} and "
                f"num_heads={num_heads} instead"
            )
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.embed_dim = embed_dim
        self.kdim = kdim if kdim is not None else embed_dim
        self.vdim = vdim if vdim is not None else embed_dim
        self._qkv_same_embed_dim = self.kdim == embed_dim and self.vdim == embed_dim
        self.num_heads = num_heads
        self.dropout = dropout
        self.batch_first = batch_first
        self.head_dim = embed_dim // num_heads
        if self.head_dim * num_heads != embed_dim:
            raise value_error(
                f"embed_dim must be divisible by num_heads, got embed_dim={embed_dim} and "
                f"num_heads={num_heads}"
            )
        if not self._qkv_same_embed_dim:
            self.q_proj_weight = Parameter(empty(embed_dim, embed_dim, **factory))
            self.k_proj_weight = Parameter(empty(embed_dim, self.kdim, **factory))
            self.v_proj_weight = Parameter(empty(embed_dim, self.vdim, **factory))
            self.register_parameter("in_proj_weight", None)
        else:
            self.in_proj_weight = Parameter(empty(3 * embed_dim, embed_dim, **factory))
            self.register_parameter("q_proj_weight", None)
            self.register_parameter("k_proj_weight", None)
            self.register_parameter("v_proj_weight", None)
        if bias:
            self.in_proj_bias = Parameter(empty(3 * embed_dim, **factory))
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = NonDynamicallyQuantizableLinear(embed_dim, embed_dim, bias=bias, **factory)
        if add_bias_kv:
            self.bias_k = Parameter(empty(1, 1, embed_dim, **factory))
            self.bias_v = Parameter(empty(1, 1, embed_dim, **factory))
        else:
            self.bias_k = self.bias_v = None
        self.add_zero_attn = add_zero_attn
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        if self._qkv_same_embed_dim:
            init.xavier_uniform_(self.in_proj_weight)
        else:
            init.xavier_uniform_(self.q_proj_weight)
            init.xavier_uniform_(self.k_proj_weight)
            init.xavier_uniform_(self.v_proj_weight)
        if self.in_proj_bias is not None:
            init.constant_(self.in_proj_bias, 0.0)
            init.constant_(self.out_proj.bias, 0.0)
        if self.bias_k is not None:
            init.xavier_normal_(self.bias_k)
            init.xavier_normal_(self.bias_v)

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        key_padding_mask: Tensor | None = None,
        need_weights: bool = True,
        attn_mask: Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        batched = _check_shapes(query, key, value, key_padding_mask, attn_mask, self.num_heads)
        if (self.batch_first and batched and query is key and key is value
                and key_padding_mask is None and not need_weights
                and self._qkv_same_embed_dim and self.bias_k is None and not self.add_zero_attn
                and query.shape[-1] == self.embed_dim
                and not (is_causal and attn_mask is None)  # the general path says why not
                and (attn_mask is None or (attn_mask.dim() == 2
                                           and tuple(attn_mask.shape) == (query.shape[1],) * 2))):
            return self._self_attend_batch_first(query, attn_mask, is_causal), None
        if self.batch_first and batched:
            # keep `query is key is value` true: it selects the fused self-attention projection
            if key is value:
                if query is key:
                    query = key = value = ops.transpose(query, 1, 0)
                else:
                    query, key = (ops.transpose(x, 1, 0) for x in (query, key))
                    value = key
            else:
                query, key, value = (ops.transpose(x, 1, 0) for x in (query, key, value))
        output, weights = self._attend(
            query,
            key,
            value,
            key_padding_mask,
            need_weights,
            attn_mask,
            average_attn_weights,
            is_causal,
            batched,
        )
        if self.batch_first and batched:
            output = ops.transpose(output, 1, 0)
        return output, weights

    def _self_attend_batch_first(self, x: Tensor, attn_mask, is_causal: bool) -> Tensor:
        """Self-attention on (N, L, E) without the (L, N, E) round trip: the heads are views of
        the one in-projection, (N, L, 3, H, D) permuted to (3, N, H, L, D), so no head is
        copied before the products (the general path reshapes transposed slices: six
        copies). The same operations as the general path otherwise."""
        n, length, embed_dim = tuple(x.shape)
        heads, head_dim = self.num_heads, self.head_dim
        if is_causal:
            attn_mask = None  # the hint alone tells scaled_dot_product_attention to mask
        else:
            attn_mask = _canonical_mask(attn_mask, "attn_mask", x.dtype)
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
        qkv = ops.permute(ops.reshape(qkv, n, length, 3, heads, head_dim), 2, 0, 3, 1, 4)
        q, k, v = ops.unbind(qkv, 0)
        dropout_p = self.dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, attn_mask, dropout_p, is_causal)
        out = ops.reshape(ops.permute(out, 0, 2, 1, 3), n * length, embed_dim)
        out = F.linear(out, self.out_proj.weight, self.out_proj.bias)
        return ops.reshape(out, n, length, embed_dim)

    def _project(self, query: Tensor, key: Tensor, value: Tensor):
        b_q = b_k = b_v = None
        if self.in_proj_bias is not None:
            b_q, b_k, b_v = ops.chunk(self.in_proj_bias, 3)
        if not self._qkv_same_embed_dim:
            return (
                F.linear(query, self.q_proj_weight, b_q),
                F.linear(key, self.k_proj_weight, b_k),
                F.linear(value, self.v_proj_weight, b_v),
            )
        if query is key and key is value:
            return tuple(ops.chunk(F.linear(query, self.in_proj_weight, self.in_proj_bias), 3, -1))
        w_q, w_k, w_v = ops.chunk(self.in_proj_weight, 3)
        return F.linear(query, w_q, b_q), F.linear(key, w_k, b_k), F.linear(value, w_v, b_v)

    def _attend(
        self,
        query,
        key,
        value,
        key_padding_mask,
        need_weights,
        attn_mask,
        average_attn_weights,
        is_causal,
        batched,
    ):
        """PyTorch's multi_head_attention_forward on (L, N, E) inputs."""
        if not batched:
            query, key, value = (ops.unsqueeze(x, 1) for x in (query, key, value))
            if key_padding_mask is not None:
                key_padding_mask = ops.unsqueeze(key_padding_mask, 0)
        tgt_len, bsz, embed_dim = tuple(query.shape)
        src_len = key.shape[0]
        heads, head_dim = self.num_heads, self.head_dim
        if embed_dim != self.embed_dim:
            raise value_error(
                f"was expecting embedding dimension of {self.embed_dim}, but got {embed_dim}"
            )
        if tuple(key.shape[:2]) != tuple(value.shape[:2]):
            raise value_error(
                f"key's sequence and batch dims {tuple(key.shape[:2])} do not match value's "
                f"{tuple(value.shape[:2])}"
            )
        key_padding_mask = _canonical_mask(key_padding_mask, "key_padding_mask", query.dtype)
        if is_causal and attn_mask is None:
            raise runtime_error(
                "Need attn_mask if specifying the is_causal hint. You may use the Transformer "
                "module method `generate_square_subsequent_mask` to create this mask."
            )
        if is_causal and key_padding_mask is None and not need_weights:
            # the hint alone tells scaled_dot_product_attention to mask causally
            attn_mask = None
        else:
            attn_mask = _canonical_mask(attn_mask, "attn_mask", query.dtype)
            if key_padding_mask is not None:
                is_causal = False  # the merged mask below is no longer causal

        q, k, v = self._project(query, key, value)

        if attn_mask is not None:
            if attn_mask.dim() == 2:
                if tuple(attn_mask.shape) != (tgt_len, src_len):
                    raise runtime_error(
                        f"The shape of the 2D attn_mask is {tuple(attn_mask.shape)}, but should "
                        f"be {(tgt_len, src_len)}."
                    )
                attn_mask = ops.unsqueeze(attn_mask, 0)
            elif tuple(attn_mask.shape) != (bsz * heads, tgt_len, src_len):
                raise runtime_error(
                    f"The shape of the 3D attn_mask is {tuple(attn_mask.shape)}, but should be "
                    f"{(bsz * heads, tgt_len, src_len)}."
                )
        if self.bias_k is not None:
            k = ops.cat([k, ops.repeat(self.bias_k, 1, bsz, 1)])
            v = ops.cat([v, ops.repeat(self.bias_v, 1, bsz, 1)])
            attn_mask = None if attn_mask is None else F.pad(attn_mask, (0, 1))
            key_padding_mask = None if key_padding_mask is None else F.pad(key_padding_mask, (0, 1))

        # (L, N, E) -> (N * heads, L, head_dim)
        q = ops.transpose(ops.reshape(q, tgt_len, bsz * heads, head_dim), 0, 1)
        k = ops.transpose(ops.reshape(k, k.shape[0], bsz * heads, head_dim), 0, 1)
        v = ops.transpose(ops.reshape(v, v.shape[0], bsz * heads, head_dim), 0, 1)
        if self.add_zero_attn:
            zero = zeros(bsz * heads, 1, head_dim, dtype=k.dtype, device=k.device)
            k, v = ops.cat([k, zero], dim=1), ops.cat([v, zero], dim=1)
            attn_mask = None if attn_mask is None else F.pad(attn_mask, (0, 1))
            key_padding_mask = None if key_padding_mask is None else F.pad(key_padding_mask, (0, 1))
        src_len = k.shape[1]

        if key_padding_mask is not None:
            if tuple(key_padding_mask.shape) != (bsz, src_len):
                raise value_error(
                    f"Expected key_padding_mask of shape {(bsz, src_len)}, but got "
                    f"{tuple(key_padding_mask.shape)}"
                )
            key_padding_mask = ops.reshape(
                ops.expand(
                    ops.reshape(key_padding_mask, bsz, 1, 1, src_len), bsz, heads, 1, src_len
                ),
                bsz * heads,
                1,
                src_len,
            )
            attn_mask = key_padding_mask if attn_mask is None else attn_mask + key_padding_mask

        dropout_p = self.dropout if self.training else 0.0
        if need_weights:
            scores = ops.matmul(q * math.sqrt(1.0 / float(head_dim)), ops.transpose(k, -2, -1))
            if attn_mask is not None:
                scores = scores + attn_mask
            weights = F.softmax(scores, dim=-1)
            if dropout_p > 0.0:
                weights = F.dropout(weights, p=dropout_p)
            output = ops.matmul(weights, v)
            output = ops.reshape(ops.transpose(output, 0, 1), tgt_len * bsz, embed_dim)
            output = F.linear(output, self.out_proj.weight, self.out_proj.bias)
            output = ops.reshape(output, tgt_len, bsz, embed_dim)
            weights = ops.reshape(weights, bsz, heads, tgt_len, src_len)
            if average_attn_weights:
                weights = ops.mean(weights, dim=1)
            if not batched:
                output, weights = ops.squeeze(output, 1), ops.squeeze(weights, 0)
            return output, weights

        if attn_mask is not None:
            if attn_mask.shape[0] == 1:
                attn_mask = ops.unsqueeze(attn_mask, 0)
            else:
                attn_mask = ops.reshape(attn_mask, bsz, heads, -1, src_len)
        q = ops.reshape(q, bsz, heads, tgt_len, head_dim)
        k = ops.reshape(k, bsz, heads, src_len, head_dim)
        v = ops.reshape(v, bsz, heads, src_len, head_dim)
        output = F.scaled_dot_product_attention(q, k, v, attn_mask, dropout_p, is_causal)
        output = ops.reshape(ops.permute(output, 2, 0, 1, 3), bsz * tgt_len, embed_dim)
        output = F.linear(output, self.out_proj.weight, self.out_proj.bias)
        output = ops.reshape(output, tgt_len, bsz, embed_dim)
        if not batched:
            output = ops.squeeze(output, 1)
        return output, None
