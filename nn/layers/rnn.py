"""Recurrent layers: RNN, LSTM, GRU and their one-step cells, with PyTorch's parameter names.

An LSTM layer (one direction of one layer, without proj_size) is one op over the whole
sequence, "lstm_layer" (ir/ops/nn.py; its kernel runs the recurrence natively, as PyTorch's CPU
kernel does, and its backward is one op too), so eager mode dispatches one op per layer and
ember.script records one node; a GRU layer in float32 or float64 is one "gru_layer" op the same
way (its kernel's steps are whole-array numpy calls). RNN, the cells other than LSTMCell and an
LSTM with proj_size are built from ember ops (linear, sigmoid, tanh, chunk, stack): each layer
projects the input of all time steps in one matmul, then runs the recurrence step by step in
Python.

A PackedSequence input (nn/utils/rnn.py) runs the same layer functions over runs of steps: its
sequences are sorted longest first, so the batch only shrinks as they end; each run of steps
with one batch size is one call over (steps, batch), and between runs the states of the
sequences that ended are set aside (or, in the reverse direction, the initial states of the
sequences that start are joined). So each sequence's final state is the one at its own last
step, and the reverse direction starts at it.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Callable

from ..._tensor import Tensor, dispatch, ops
from ..._tensor.factories import empty, zeros
from ...errors import runtime_error, type_error, value_error
from ...ir.dtypes import float32, float64
from .. import functional as F
from .. import init
from ..module import Module
from ..parameter import Parameter
from ..utils.rnn import PackedSequence

__all__ = ["GRU", "GRUCell", "LSTM", "LSTMCell", "RNN", "RNNBase", "RNNCell", "RNNCellBase"]

_GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}


# -- one time step -----------------------------------------------------------------------------
# x_proj is input @ w_ih.T + b_ih, computed for all steps at once; each rule adds the hidden
# projection and returns the new state, in the operation order of PyTorch's CPU cells.


def _rnn_step(x_proj: Tensor, h: Tensor, w_hh: Tensor, b_hh, act: Callable) -> Tensor:
    return act(x_proj + F.linear(h, w_hh, b_hh))


def _lstm_step(x_proj: Tensor, h: Tensor, c: Tensor, w_hh: Tensor, b_hh, w_hr):
    gates = x_proj + F.linear(h, w_hh, b_hh)
    in_gate, forget_gate, cell_gate, out_gate = ops.chunk(gates, 4, -1)
    c = ops.sigmoid(forget_gate) * c + ops.sigmoid(in_gate) * ops.tanh(cell_gate)
    h = ops.sigmoid(out_gate) * ops.tanh(c)
    if w_hr is not None:
        h = F.linear(h, w_hr)
    return h, c


def _gru_step(x_proj: Tensor, h: Tensor, w_hh: Tensor, b_hh) -> Tensor:
    x_r, x_z, x_n = ops.chunk(x_proj, 3, -1)
    h_r, h_z, h_n = ops.chunk(F.linear(h, w_hh, b_hh), 3, -1)
    reset = ops.sigmoid(x_r + h_r)
    update = ops.sigmoid(x_z + h_z)
    new = ops.tanh(x_n + reset * h_n)
    return new + update * (h - new)


def _stepped(step: Callable) -> Callable:
    """One direction of one layer as a Python loop of step(x_proj, state, weights): the input
    of all steps projected by one matmul first, as PyTorch's CPU path does."""

    def layer(layer_input: Tensor, state: tuple, weights: dict, reverse: bool):
        x_proj = F.linear(layer_input, weights["weight_ih"], weights.get("bias_ih"))
        steps = ops.unbind(x_proj, 0)
        order = range(len(steps) - 1, -1, -1) if reverse else range(len(steps))
        hs = [None] * len(steps)
        for t in order:
            state = step(steps[t], state, weights)
            hs[t] = state[0]
        return ops.stack(hs, 0), state

    return layer


def _lstm_layer(layer_input: Tensor, state: tuple, weights: dict, reverse: bool):
    """One direction of one LSTM layer (no projection) as one lstm_layer op."""
    inputs = (layer_input, state[0], state[1], weights["weight_ih"], weights["weight_hh"])
    if "bias_ih" in weights:
        inputs += (weights["bias_ih"], weights["bias_hh"])
    output, h_n, c_n, _gates, _cells = dispatch("lstm_layer", inputs, {"reverse": reverse})
    return output, (h_n, c_n)


def _gru_layer(layer_input: Tensor, state: tuple, weights: dict, reverse: bool):
    """One direction of one GRU layer as one gru_layer op."""
    inputs = (layer_input, state[0], weights["weight_ih"], weights["weight_hh"])
    if "bias_ih" in weights:
        inputs += (weights["bias_ih"], weights["bias_hh"])
    output, h_n, _saved = dispatch("gru_layer", inputs, {"reverse": reverse})
    return output, (h_n,)


def _segments(batch_sizes: list[int]) -> list[tuple[int, int, int]]:
    """(first row, steps, batch) of each run of steps of a PackedSequence with one batch size."""
    segments, row, t = [], 0, 0
    while t < len(batch_sizes):
        batch, steps = batch_sizes[t], 1
        while t + steps < len(batch_sizes) and batch_sizes[t + steps] == batch:
            steps += 1
        segments.append((row, steps, batch))
        row, t = row + steps * batch, t + steps
    return segments


def _packed_direction(layer: Callable, data: Tensor, segments: list, state: tuple,
                      weights: dict, reverse: bool):
    """One direction of one layer over packed data (rows, H_in): layer (as _run's) called once
    per run of steps with one batch size. Returns the packed output (rows, H_out) and each
    sequence's state after its own last step (forward) or its first step (reverse)."""
    features = data.shape[1]
    pieces = [None] * len(segments)
    if not reverse:
        ended = []  # the final states of the sequences that ended, earliest first
        for i, (row, steps, batch) in enumerate(segments):
            if batch < state[0].shape[0]:
                ended.append(tuple(s[batch:] for s in state))
                state = tuple(s[:batch] for s in state)
            x = ops.reshape(data[row:row + steps * batch], (steps, batch, features))
            output, state = layer(x, state, weights, False)
            pieces[i] = ops.reshape(output, (steps * batch, output.shape[2]))
        if ended:  # the batch is sorted longest first: the latest to end come first
            state = tuple(ops.cat([s] + [e[k] for e in reversed(ended)], 0)
                          for k, s in enumerate(state))
    else:
        initial = state
        state = tuple(s[:segments[-1][2]] for s in initial)
        for i in range(len(segments) - 1, -1, -1):
            row, steps, batch = segments[i]
            running = state[0].shape[0]
            if batch > running:
                state = tuple(ops.cat([s, s0[running:batch]], 0)
                              for s, s0 in zip(state, initial))
            x = ops.reshape(data[row:row + steps * batch], (steps, batch, features))
            output, state = layer(x, state, weights, True)
            pieces[i] = ops.reshape(output, (steps * batch, output.shape[2]))
    return (pieces[0] if len(pieces) == 1 else ops.cat(pieces, 0)), state


def _check_positive_int(name: str, value) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise type_error(f"{name} should be of type int, got: {type(value).__name__}")
    if value <= 0:
        raise value_error(f"{name} must be greater than zero")


# -- the multi-layer modules -------------------------------------------------------------------


class RNNBase(Module):
    """The layers, directions and parameters shared by RNN, LSTM and GRU.

    Parameters per layer and direction: weight_ih_l{k}, weight_hh_l{k}, bias_ih_l{k},
    bias_hh_l{k} (and weight_hr_l{k} for an LSTM with proj_size), suffixed _reverse for the
    backward direction; all drawn from U(-1/sqrt(hidden_size), 1/sqrt(hidden_size)).
    """

    def __init__(
        self,
        mode: str,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        if mode not in _GATES:
            raise value_error("Unrecognized RNN mode: " + str(mode))
        if (not isinstance(dropout, numbers.Number) or isinstance(dropout, bool)
                or not 0 <= dropout <= 1):
            raise value_error(
                "dropout should be a number in range [0, 1] representing the probability of an "
                "element being zeroed"
            )
        if dropout > 0 and num_layers == 1:
            warnings.warn(
                "dropout option adds dropout after all but last recurrent layer, so non-zero "
                f"dropout expects num_layers greater than 1, but got dropout={dropout} and "
                f"num_layers={num_layers}",
                stacklevel=3,
            )
        if not isinstance(bias, bool):
            raise type_error(f"bias should be of type bool, got: {type(bias).__name__}")
        if not isinstance(batch_first, bool):
            raise type_error(
                f"batch_first should be of type bool, got: {type(batch_first).__name__}"
            )
        _check_positive_int("input_size", input_size)
        _check_positive_int("hidden_size", hidden_size)
        if num_layers <= 0:
            raise value_error("num_layers must be greater than zero")
        if proj_size < 0:
            raise value_error(
                "proj_size should be a positive integer or zero to disable projections"
            )
        if proj_size >= hidden_size:
            raise value_error("proj_size has to be smaller than hidden_size")
        self.mode = mode
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = float(dropout)
        self.bidirectional = bidirectional
        self.proj_size = proj_size
        num_directions = 2 if bidirectional else 1
        gate_size = _GATES[mode] * hidden_size
        real_hidden_size = proj_size if proj_size > 0 else hidden_size
        factory = {"device": device, "dtype": dtype}

        self._flat_weights_names: list[str] = []
        self._all_weights: list[list[str]] = []
        for layer in range(num_layers):
            layer_input_size = input_size if layer == 0 else real_hidden_size * num_directions
            for direction in range(num_directions):
                shapes = {"weight_ih": (gate_size, layer_input_size),
                          "weight_hh": (gate_size, real_hidden_size)}
                if bias:
                    shapes["bias_ih"] = (gate_size,)
                    shapes["bias_hh"] = (gate_size,)
                if proj_size > 0:
                    shapes["weight_hr"] = (proj_size, hidden_size)
                suffix = "_reverse" if direction == 1 else ""
                names = []
                for kind, shape in shapes.items():
                    name = f"{kind}_l{layer}{suffix}"
                    setattr(self, name, Parameter(empty(shape, **factory)))
                    names.append(name)
                self._flat_weights_names.extend(names)
                self._all_weights.append(names)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        stdv = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0
        for weight in self.parameters():
            init.uniform_(weight, -stdv, stdv)

    def flatten_parameters(self) -> None:
        """A no-op: ember keeps no fused weight buffer (PyTorch's is for cuDNN)."""

    @property
    def _flat_weights(self) -> list[Tensor | None]:
        return [getattr(self, name, None) for name in self._flat_weights_names]

    @property
    def all_weights(self) -> list[list[Parameter]]:
        return [[getattr(self, name) for name in names] for names in self._all_weights]

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.proj_size != 0:
            s += f", proj_size={self.proj_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if self.batch_first is not False:
            s += f", batch_first={self.batch_first}"
        if self.dropout != 0:
            s += f", dropout={self.dropout}"
        if self.bidirectional is not False:
            s += f", bidirectional={self.bidirectional}"
        return s

    # -- checks --------------------------------------------------------------------------------

    def _check_input(self, input: Tensor) -> None:
        weight = self.weight_ih_l0
        if input.dtype != weight.dtype:
            raise value_error(
                f"RNN input dtype ({input.dtype}) does not match weight dtype ({weight.dtype}). "
                f"Convert input: input.to({weight.dtype}), or convert model: "
                f"model.to({input.dtype})"
            )
        if input.size(-1) != self.input_size:
            raise runtime_error(
                f"input.size(-1) must be equal to input_size. Expected {self.input_size}, got "
                f"{input.size(-1)} (input of shape {tuple(input.shape)})"
            )

    def _expected_hidden_size(self, input: Tensor, size: int) -> tuple[int, int, int]:
        mini_batch = input.size(0) if self.batch_first else input.size(1)
        return (self.num_layers * (2 if self.bidirectional else 1), mini_batch, size)

    @staticmethod
    def _check_hidden_size(hx: Tensor, expected, what: str = "hidden") -> None:
        if tuple(hx.shape) != tuple(expected):
            raise runtime_error(f"Expected {what} size {tuple(expected)}, got {list(hx.shape)}")

    def _batch_input(self, input: Tensor) -> bool:
        if input.dim() not in (2, 3):
            name, noun = ("RNN", " tensor") if self.mode.startswith("RNN") else (self.mode, "")
            raise value_error(
                f"{name}: Expected input to be 2D or 3D, got {input.dim()}D{noun} instead "
                f"(input of shape {tuple(input.shape)})"
            )
        return input.dim() == 3

    # -- the recurrence ------------------------------------------------------------------------

    def _run(self, input: Tensor, states: list[tuple[Tensor, ...]], layer: Callable):
        """All layers and directions over input (L, N, H_in), batch_first already undone.

        states[k] is the initial state of layer k // directions, direction k % directions;
        layer(input, state, weights, reverse) -> (output (L, N, H_out), final state) runs one
        direction of one layer (_stepped(step), _lstm_layer or _gru_layer).
        Returns the last layer's output (L, N, directions * H_out) and the final states.
        """
        num_directions = 2 if self.bidirectional else 1
        finals = []
        layer_input = input
        for index in range(self.num_layers):
            outputs = []
            for direction in range(num_directions):
                names = self._all_weights[index * num_directions + direction]
                weights = dict(zip((n.rsplit("_l", 1)[0] for n in names),
                                   (getattr(self, n) for n in names)))
                state = states[index * num_directions + direction]
                output, state = layer(layer_input, state, weights, direction == 1)
                outputs.append(output)
                finals.append(state)
            layer_input = outputs[0] if num_directions == 1 else ops.cat(outputs, -1)
            if self.dropout and self.training and index < self.num_layers - 1:
                layer_input = F.dropout(layer_input, self.dropout, True)
        return layer_input, finals

    def _forward(self, input: Tensor, hx: tuple[Tensor, ...], layer: Callable):
        """input (L, N, H_in), or (N, L, H_in) with batch_first, and hx batched; returns the
        output and the final states, each kind stacked over layers and directions."""
        if self.batch_first:
            input = ops.transpose(input, 0, 1)
        if input.shape[0] == 0:
            raise runtime_error("Expected sequence length to be larger than 0 in RNN")
        per_kind = [ops.unbind(h, 0) for h in hx]
        states = [tuple(kind[k] for kind in per_kind) for k in range(len(per_kind[0]))]
        output, finals = self._run(input, states, layer)
        if self.batch_first:
            output = ops.transpose(output, 0, 1)
        stacked = tuple(ops.stack([s[i] for s in finals], 0) for i in range(len(hx)))
        return output, stacked

    def _forward_packed(self, packed: PackedSequence, hx: tuple[Tensor, ...] | None,
                        state_sizes: tuple[int, ...], what: tuple[str, ...], layer: Callable):
        """The forward of a PackedSequence: hx (each (layers * directions, N, size), in the
        batch's original order) or zeros; layer as _run's. Returns the packed output and the
        final states, each stacked over layers and directions, in the original order."""
        data, batch_sizes, sorted_indices, unsorted_indices = packed
        if data.dim() != 2:
            raise runtime_error(
                f"input must have 2 dimensions, got {data.dim()} (the data of a PackedSequence, "
                f"of shape {tuple(data.shape)})"
            )
        self._check_input(data)
        sizes = [int(n) for n in batch_sizes.tolist()]
        num_states = self.num_layers * (2 if self.bidirectional else 1)
        expected = [(num_states, sizes[0], size) for size in state_sizes]
        if hx is None:
            hx = tuple(zeros(shape, dtype=data.dtype, device=data.device) for shape in expected)
        else:
            for h, shape, name in zip(hx, expected, what):
                self._check_hidden_size(h, shape, name)
            if sorted_indices is not None:
                hx = tuple(ops.index_select(h, 1, sorted_indices) for h in hx)
        per_kind = [ops.unbind(h, 0) for h in hx]
        states = [tuple(kind[k] for kind in per_kind) for k in range(num_states)]
        segments = _segments(sizes)

        def packed_layer(layer_input, state, weights, reverse):
            return _packed_direction(layer, layer_input, segments, state, weights, reverse)

        output, finals = self._run(data, states, packed_layer)
        stacked = tuple(ops.stack([s[i] for s in finals], 0) for i in range(len(hx)))
        if unsorted_indices is not None:
            stacked = tuple(ops.index_select(h, 1, unsorted_indices) for h in stacked)
        return PackedSequence(output, batch_sizes, sorted_indices, unsorted_indices), stacked

    def _forward_one_state(self, input: Tensor, hx: Tensor | None, layer: Callable):
        """RNN's and GRU's forward: one state tensor h, batched or not; layer as _run's."""
        batched = self._batch_input(input)
        if not batched:
            input = ops.unsqueeze(input, 0 if self.batch_first else 1)
            if hx is not None:
                if hx.dim() != 2:
                    raise runtime_error(
                        f"For unbatched 2-D input, hx should also be 2-D but got {hx.dim()}-D "
                        "tensor"
                    )
                hx = ops.unsqueeze(hx, 1)
        elif hx is not None and hx.dim() != 3:
            raise runtime_error(
                f"For batched 3-D input, hx should also be 3-D but got {hx.dim()}-D tensor"
            )
        self._check_input(input)
        expected = self._expected_hidden_size(input, self.hidden_size)
        if hx is None:
            hx = zeros(expected, dtype=input.dtype, device=input.device)
        self._check_hidden_size(hx, expected)
        output, (h_n,) = self._forward(input, (hx,), layer)
        if not batched:
            output = ops.squeeze(output, 0 if self.batch_first else 1)
            h_n = ops.squeeze(h_n, 1)
        return output, h_n


class RNN(RNNBase):
    """An Elman RNN: h_t = tanh(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh), or relu.

    RNN(input_size, hidden_size, num_layers=1, nonlinearity='tanh', bias=True,
    batch_first=False, dropout=0.0, bidirectional=False). forward(input, hx=None) returns
    (output, h_n).
    """

    def __init__(self, *args, **kwargs) -> None:
        if "proj_size" in kwargs:
            raise value_error("proj_size argument is only supported for LSTM, not RNN or GRU")
        if len(args) > 3:
            self.nonlinearity = args[3]
            args = args[:3] + args[4:]
        else:
            self.nonlinearity = kwargs.pop("nonlinearity", "tanh")
        if self.nonlinearity == "tanh":
            mode = "RNN_TANH"
        elif self.nonlinearity == "relu":
            mode = "RNN_RELU"
        else:
            raise value_error(
                f"Unknown nonlinearity '{self.nonlinearity}'. Select from 'tanh' or 'relu'."
            )
        super().__init__(mode, *args, **kwargs)

    def forward(self, input: Tensor, hx: Tensor | None = None) -> tuple[Tensor, Tensor]:
        act = ops.tanh if self.mode == "RNN_TANH" else ops.relu

        def step(x_proj, state, w):
            return (_rnn_step(x_proj, state[0], w["weight_hh"], w.get("bias_hh"), act),)

        if isinstance(input, PackedSequence):
            output, (h_n,) = self._forward_packed(input, None if hx is None else (hx,),
                                                  (self.hidden_size,), ("hidden",),
                                                  _stepped(step))
            return output, h_n
        return self._forward_one_state(input, hx, _stepped(step))


class LSTM(RNNBase):
    """Long short-term memory, gates in PyTorch's order (input, forget, cell, output):
    c_t = f * c_{t-1} + i * g, h_t = o * tanh(c_t), then h_t W_hr^T with proj_size.

    forward(input, (h_0, c_0)=None) returns (output, (h_n, c_n)).
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__("LSTM", *args, **kwargs)

    def _layer(self, dtype) -> Callable:
        """The function running one direction of one layer (as _run's) for inputs of dtype."""
        if self.proj_size == 0 and dtype in (float32, float64):
            return _lstm_layer

        def step(x_proj, state, w):
            return _lstm_step(x_proj, state[0], state[1], w["weight_hh"], w.get("bias_hh"),
                              w.get("weight_hr"))

        return _stepped(step)

    def forward(self, input: Tensor | PackedSequence,
                hx: tuple[Tensor, Tensor] | None = None):
        real_hidden = self.proj_size if self.proj_size > 0 else self.hidden_size
        if isinstance(input, PackedSequence):
            if hx is not None and (hx[0].dim() != 3 or hx[1].dim() != 3):
                raise runtime_error(
                    "For batched 3-D input, hx and cx should also be 3-D but got "
                    f"({hx[0].dim()}-D, {hx[1].dim()}-D) tensors"
                )
            output, (h_n, c_n) = self._forward_packed(
                input, None if hx is None else tuple(hx), (real_hidden, self.hidden_size),
                ("hidden[0]", "hidden[1]"), self._layer(input.data.dtype))
            return output, (h_n, c_n)
        batched = self._batch_input(input)
        if not batched:
            input = ops.unsqueeze(input, 0 if self.batch_first else 1)
        self._check_input(input)
        expected_h = self._expected_hidden_size(input, real_hidden)
        expected_c = self._expected_hidden_size(input, self.hidden_size)
        if hx is None:
            hx = (zeros(expected_h, dtype=input.dtype, device=input.device),
                  zeros(expected_c, dtype=input.dtype, device=input.device))
        else:
            want = 3 if batched else 2
            if hx[0].dim() != want or hx[1].dim() != want:
                kind = "batched 3-D" if batched else "unbatched 2-D"
                raise runtime_error(
                    f"For {kind} input, hx and cx should also be {want}-D but got "
                    f"({hx[0].dim()}-D, {hx[1].dim()}-D) tensors"
                )
            if not batched:
                hx = (ops.unsqueeze(hx[0], 1), ops.unsqueeze(hx[1], 1))
        self._check_hidden_size(hx[0], expected_h, "hidden[0]")
        self._check_hidden_size(hx[1], expected_c, "hidden[1]")

        output, (h_n, c_n) = self._forward(input, tuple(hx), self._layer(input.dtype))
        if not batched:
            output = ops.squeeze(output, 0 if self.batch_first else 1)
            h_n, c_n = ops.squeeze(h_n, 1), ops.squeeze(c_n, 1)
        return output, (h_n, c_n)


class GRU(RNNBase):
    """Gated recurrent unit, gates in PyTorch's order (reset, update, new):
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn)), h' = (1 - z) * n + z * h.

    forward(input, h_0=None) returns (output, h_n).
    """

    def __init__(self, *args, **kwargs) -> None:
        if "proj_size" in kwargs:
            raise value_error("proj_size argument is only supported for LSTM, not RNN or GRU")
        super().__init__("GRU", *args, **kwargs)

    def forward(self, input: Tensor | PackedSequence, hx: Tensor | None = None):
        packed = isinstance(input, PackedSequence)
        if (input.data if packed else input).dtype in (float32, float64):
            layer = _gru_layer
        else:
            def step(x_proj, state, w):
                return (_gru_step(x_proj, state[0], w["weight_hh"], w.get("bias_hh")),)

            layer = _stepped(step)
        if packed:
            output, (h_n,) = self._forward_packed(input, None if hx is None else (hx,),
                                                  (self.hidden_size,), ("hidden",), layer)
            return output, h_n
        return self._forward_one_state(input, hx, layer)


# -- cells -------------------------------------------------------------------------------------


class RNNCellBase(Module):
    """weight_ih (gates * hidden, input), weight_hh (gates * hidden, hidden), bias_ih, bias_hh,
    drawn from U(-1/sqrt(hidden_size), 1/sqrt(hidden_size))."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool, num_chunks: int,
                 device=None, dtype=None) -> None:
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bias = bias
        self.weight_ih = Parameter(empty(num_chunks * hidden_size, input_size, **factory))
        self.weight_hh = Parameter(empty(num_chunks * hidden_size, hidden_size, **factory))
        if bias:
            self.bias_ih = Parameter(empty(num_chunks * hidden_size, **factory))
            self.bias_hh = Parameter(empty(num_chunks * hidden_size, **factory))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if getattr(self, "nonlinearity", "tanh") != "tanh":
            s += f", nonlinearity={self.nonlinearity}"
        return s

    def reset_parameters(self) -> None:
        stdv = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0
        for weight in self.parameters():
            init.uniform_(weight, -stdv, stdv)

    def _check_dims(self, input: Tensor, states) -> bool:
        """Whether the input is batched; raises PyTorch's errors for bad dims and sizes."""
        name = type(self).__name__
        if input.dim() not in (1, 2):
            raise value_error(
                f"{name}: Expected input to be 1D or 2D, got {input.dim()}D instead (input of "
                f"shape {tuple(input.shape)})"
            )
        for what, h in states:
            if h is not None and h.dim() not in (1, 2):
                raise value_error(
                    f"{name}: Expected {what} to be 1D or 2D, got {h.dim()}D instead ({what} of "
                    f"shape {tuple(h.shape)})"
                )
        if input.size(-1) != self.input_size:
            raise runtime_error(
                f"input has inconsistent input_size: got {input.size(-1)}, expected "
                f"{self.input_size} (input of shape {tuple(input.shape)})"
            )
        return input.dim() == 2

    def _states(self, input: Tensor, batched: bool, states, count: int):
        """(input, states), both batched, the states checked against input (zeros when
        none are given)."""
        if not batched:
            input = ops.unsqueeze(input, 0)
        if states is None:
            return input, [zeros(input.size(0), self.hidden_size, dtype=input.dtype,
                                 device=input.device) for _ in range(count)]
        out = []
        for i, h in enumerate(states):
            h = h if batched else ops.unsqueeze(h, 0)
            label = "" if count == 1 else f"[{i}]"
            if h.dim() != 2 or h.size(0) != input.size(0):
                raise runtime_error(
                    f"Input batch size {input.size(0)} doesn't match hidden{label} batch size "
                    f"{h.size(0)} (input {tuple(input.shape)}, hidden{label} {tuple(h.shape)})"
                )
            if h.size(1) != self.hidden_size:
                raise runtime_error(
                    f"hidden{label} has inconsistent hidden_size: got {h.size(1)}, expected "
                    f"{self.hidden_size}"
                )
            out.append(h)
        return input, out


class RNNCell(RNNCellBase):
    """One step of an Elman RNN: h' = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh), or relu."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 nonlinearity: str = "tanh", device=None, dtype=None) -> None:
        super().__init__(input_size, hidden_size, bias, 1, device=device, dtype=dtype)
        self.nonlinearity = nonlinearity

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        batched = self._check_dims(input, [("hidden", hx)])
        if self.nonlinearity == "tanh":
            act = ops.tanh
        elif self.nonlinearity == "relu":
            act = ops.relu
        else:
            raise runtime_error(f"Unknown nonlinearity: {self.nonlinearity}")
        input, (h,) = self._states(input, batched, None if hx is None else [hx], 1)
        x_proj = F.linear(input, self.weight_ih, self.bias_ih)
        out = _rnn_step(x_proj, h, self.weight_hh, self.bias_hh, act)
        return out if batched else ops.squeeze(out, 0)


class LSTMCell(RNNCellBase):
    """One LSTM step; forward(input, (h, c)=None) returns (h', c')."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None,
                 dtype=None) -> None:
        super().__init__(input_size, hidden_size, bias, 4, device=device, dtype=dtype)

    def forward(self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None):
        given = [] if hx is None else [(f"hx[{i}]", h) for i, h in enumerate(hx)]
        batched = self._check_dims(input, given)
        input, (h, c) = self._states(input, batched, hx, 2)
        if input.dtype in (float32, float64):
            # one lstm_layer op of one step (and one backward op) for the cell's ~15 ops:
            # scripts step cells in Python loops (pytorch/examples time_sequence_prediction:
            # two cells a step, 999 steps a sequence), where each op's dispatch dominates
            weights = {"weight_ih": self.weight_ih, "weight_hh": self.weight_hh}
            if self.bias:
                weights.update(bias_ih=self.bias_ih, bias_hh=self.bias_hh)
            _, (h, c) = _lstm_layer(ops.unsqueeze(input, 0), (h, c), weights, False)
        else:
            x_proj = F.linear(input, self.weight_ih, self.bias_ih)
            h, c = _lstm_step(x_proj, h, c, self.weight_hh, self.bias_hh, None)
        return (h, c) if batched else (ops.squeeze(h, 0), ops.squeeze(c, 0))


class GRUCell(RNNCellBase):
    """One GRU step: r, z = sigmoid(...), n = tanh(W_in x + b_in + r * (W_hn h + b_hn)),
    h' = (1 - z) * n + z * h."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None,
                 dtype=None) -> None:
        super().__init__(input_size, hidden_size, bias, 3, device=device, dtype=dtype)

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        batched = self._check_dims(input, [("hidden", hx)])
        input, (h,) = self._states(input, batched, None if hx is None else [hx], 1)
        if input.dtype in (float32, float64):
            # one gru_layer op of one step, as LSTMCell's
            weights = {"weight_ih": self.weight_ih, "weight_hh": self.weight_hh}
            if self.bias:
                weights.update(bias_ih=self.bias_ih, bias_hh=self.bias_hh)
            _, (out,) = _gru_layer(ops.unsqueeze(input, 0), (h,), weights, False)
        else:
            x_proj = F.linear(input, self.weight_ih, self.bias_ih)
            out = _gru_step(x_proj, h, self.weight_hh, self.bias_hh)
        return out if batched else ops.squeeze(out, 0)
