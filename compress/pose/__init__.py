"""Pose definitions, decoding and metrics."""
