"""The behaviour baseline (issue 14): features per (entity, window) from every frame, and the labels of
labelled captures. Models and calibration build on these."""
