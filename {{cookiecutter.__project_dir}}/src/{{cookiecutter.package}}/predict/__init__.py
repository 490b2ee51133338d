"""Prediction: checkpoint loading, fold ensembles, TTA, submission files, thresholds.json."""
