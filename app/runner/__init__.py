"""What one process runs in the background: workers, housekeeping, the schedule loop.

``worker_pool`` claims jobs, runs their functions and records their outcomes (``lane``: a
thread's batch);
``housekeeping`` reaps expired leases, expires joins and purges old rows on timers;
``schedule_loop`` fires due schedules; ``background`` starts all three for a process;
``worker_process`` is ``jobchain worker`` (a runner without an API) and ``process_setup``
what every process does first. Modules here may import ``app.domain``, ``app.store``,
``app.services``, ``jobs`` and ``config``. They import no Flask, no waitress and no
requests (tests/test_layout.py checks it): a worker process does not pay for the web stack.
"""
