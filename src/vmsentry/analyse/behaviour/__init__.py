"""The behaviour baseline (issue 14): features of each entity's traffic per time window, per-entity
profiles, anomaly scorers, calibration and the model file."""
