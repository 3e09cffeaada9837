"""Metric functions: OOD detection, failure prediction, calibration and classification (pure numpy)."""
