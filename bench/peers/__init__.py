"""jobchain side by side with Celery, RQ and Procrastinate (run ``python -m bench.peers``).

Nothing is imported here: the peer modules run inside their own virtualenv
(``bench/.peers-venv``), the jobchain runner inside the project's.
"""
