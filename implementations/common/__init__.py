"""Shared building blocks: datasets, task streams, models, the training loop and evaluation."""
