"""The reliability battery: real processes, injected faults, one invariant checker.

``python -m bench.reliability`` runs the long forms; ``tests/test_reliability.py`` the short
ones. Scenarios live in :mod:`bench.reliability.scenarios`, the checker in
:mod:`bench.reliability.invariants`.
"""
