"""What the ways into jobchain have in common, written once: ``submit`` is the one policy a
chain goes through before it is stored (parse the payload, plan its joins, check the
submitter's role, store), used by the API, the console and the schedule loop. Modules here
import no Flask (the schedule loop runs them outside any request): only ``app.domain.payload``,
``app.domain.join_plan``, ``app.security.roles``, ``app.store``, ``jobs`` and ``config``. The web
layers (``app/api``, ``app/admin``) adapt their answers to HTTP and HTML.
"""
