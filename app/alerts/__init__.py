"""Alerts: notification rules (stored in the database) and their delivery.

``events`` says which event kinds exist and whether a rule wants an event; ``matcher``
reads the job event log and the schedule fires forward and records each delivery owed,
once per (rule, event); ``senders`` sends a signed webhook or an e-mail; ``dispatcher``
is the background thread that matches and sends, retrying with backoff, off the workers'
path. Modules here may import ``app.store``, ``app.domain``, ``app.security.signatures``,
``app.domain.statuses`` and ``config``; no Flask.
"""
