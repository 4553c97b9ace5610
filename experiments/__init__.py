"""Experiments that train models and write results pages: the results table over seeds (results.py), the
validation-split tuning (tune.py), the BDR re-decoding (bdr_decoding.py), a trained tau for the GPU table
(trained_tau.py). Run by hand, not in CI; their pure helpers are tested in tests/experiments/."""
