"""Evaluation: metrics beside baselines, thresholds from validation, bootstrap
intervals, the gate and its report."""
