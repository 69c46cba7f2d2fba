"""Alerts: tell people when a problem starts and when it clears.

Problems are states. Detectors (``detectors.py``) read the database only and say which
problems are active now; the evaluator (``evaluation.py``) opens the new ones and resolves
the gone ones, queuing one message per channel for each; delivery (``delivery.py``) sends
a channel's queue in order through its transport (``transports/``), retrying failures and
holding back what exceeds the channel's hourly limit. Nothing here runs inside a cycle.
"""
