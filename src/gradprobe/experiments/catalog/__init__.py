"""The registered experiments, one module each; importing this package registers them."""

from . import (
    glorot2010,  # noqa: F401
    he2015,  # noqa: F401
    init_gradients,  # noqa: F401
    matrix_chain,  # noqa: F401
    remedies,  # noqa: F401
    rnn_vs_lstm,  # noqa: F401
    trainability,  # noqa: F401
)
