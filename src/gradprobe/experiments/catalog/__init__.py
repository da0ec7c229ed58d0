"""The registered experiments, one module each; importing this package registers them
in this order (the order of ``gradprobe run --list``)."""

import importlib

ORDER = (
    "matrix_chain", "init_gradients", "glorot2010", "he2015", "remedies", "rnn_vs_lstm",
    "trainability",
)  # fmt: skip

for _name in ORDER:
    importlib.import_module(f".{_name}", __name__)
