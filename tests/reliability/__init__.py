"""The reliability battery: real processes, injected faults, one invariant checker.

``python -m tests.reliability`` runs the long forms; ``tests/e2e/test_reliability.py`` the short
ones. Scenarios live in :mod:`tests.reliability.scenarios`, the checker in
:mod:`tests.reliability.invariants`.
"""
