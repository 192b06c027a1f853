"""Pure rules of jobchain: what an outcome means, when a join decides.

Nothing here touches a database, Flask or the network: each module is a function of its
arguments, tested by fast table-driven unit tests. The store and the runner call these
rules; they never re-implement them.
"""
