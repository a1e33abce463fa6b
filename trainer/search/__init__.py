"""Hyperparameter search: scikit-optimize SMBO, grid sweeps, their journal and reports."""
