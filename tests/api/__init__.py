"""The JSON API over real HTTP: jobs, auth, callbacks, idempotency, schedules."""
