"""Verification: every artifact measured in its own runtime against the float model."""
