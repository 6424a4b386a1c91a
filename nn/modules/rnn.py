"""torch.nn.modules.rnn's path to ember's layers (scripts import them from here)."""

from ..layers.rnn import (  # noqa: F401
    GRU,
    LSTM,
    RNN,
    GRUCell,
    LSTMCell,
    RNNBase,
    RNNCell,
    RNNCellBase,
)
