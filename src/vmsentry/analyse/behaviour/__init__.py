"""The behaviour baseline (issue 14): features of each entity's traffic per time window (features.py), the
labels of labelled captures (labels.py), per-entity profiles, anomaly scorers, calibration, the model file and
the evaluation. docs/behaviour.md explains the whole."""
