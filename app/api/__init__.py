"""The JSON API under ``/api/v1``: one module per resource (``jobs``, ``joins``, ``callbacks``,
``schedules``), each a Flask blueprint that turns HTTP into calls on the store and on the
submit service (``app/services``) and answers with the shapes of ``schemas`` or the error
shape of ``errors``; ``shared`` holds what the views have in common (the request's runtime,
id bounds, the JSON body) and ``openapi`` describes it all. Modules here may import Flask,
marshmallow, ``app.services``, ``app.security``, ``app.store``, ``app.domain.payload``,
``app.runner.schedule_loop``, ``jobs`` and ``config``; nothing outside the web layer imports them,
except that the console (``app/admin``) uses ``shared.runtime``.
"""
