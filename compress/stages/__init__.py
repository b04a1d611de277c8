"""Stages: functions ``(bundle, config, context) -> (bundle, report)`` that never change their
input bundle in place."""
