"""The database layer: every SQL statement jobchain runs lives in this package.

Moves of a job: ``transitions`` (every status change, built from the transition table),
``claims`` (claim, lease, start check), ``completion`` (record outcomes, release what
follows, claim more), ``release`` (a parent's end and its next jobs), ``joins`` (arrivals
and decisions), ``actions`` (cancel, retry), ``recovery`` (expired leases, hand-backs),
``external`` and ``callback_deadline`` (EXTERNAL jobs). Storing and reading:
``submission``, ``join_setup``, ``join_reads``, ``queries``, ``console``, ``joblog``,
``schedules``, ``tokens``, ``idempotency``, ``retention``. Plumbing: ``database``
(transactions, retries, wake-ups), ``dialect`` (every SQLite/PostgreSQL difference),
``wakeups`` (LISTEN/NOTIFY), ``tables``, ``schema`` and ``migrations``. Modules here import
``app.domain``, ``app.failpoints`` and ``config``; never Flask, never the runner.
"""
