"""Baseline continual-learning strategies, one file per method."""
