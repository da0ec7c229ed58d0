"""The classic experiments, each a pure computation that the demo and the runner report.

``matrix_chain`` is chapter 1 of ``gradprobe demo``; ``data`` holds the offline data sets
(Shapeset-3x2, scikit-learn's digits, MNIST-1D, synthetic).
"""
