"""Prometheus metrics (docs/operations/monitoring.md).

``tail`` turns the job event log and the schedule fires into counters and histograms;
``collector`` reads the current counts (jobs by status, waiting joins, late schedules,
pending notifications) at scrape time; ``endpoint`` serves ``GET /metrics`` with the
per-process families (``process``) beside those. The event-log and database families are
produced by the API's ``/metrics`` only, never by a worker process, so a fleet exports them
once. Modules here may import ``app.store``, ``app.domain``, ``app.domain.statuses`` and
``config``; only ``endpoint`` imports Flask.
"""
