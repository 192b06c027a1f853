"""The pure rules of jobchain: what is legal, what an end means, when a join decides.

``statuses`` is the state machine (statuses, groups, the transition table); ``outcome``
decides what an attempt's end means; ``join_rules`` when a join decides; ``payload`` parses
and checks a submitted ChainedJobInfo tree and ``join_plan`` finds its joins; ``cron`` says
when a cron expression fires. Nothing here touches a database, Flask or the network: these
modules import only the standard library, marshmallow (payload) and APScheduler's cron
trigger (cron), and each other. Everything else imports them; they import nothing of it.
Their tests (tests/domain/) need no database and run in about a second.
"""
