"""Who may do what: ``roles`` is the one policy (the role each call needs, the ranking of
roles), plain Python that the API, the console, the submit service and the schedule loop all
apply; ``tokens`` checks bearer tokens on API requests against it, documents it in OpenAPI and
makes the first start's admin token; ``signatures`` checks the HMAC signatures of callbacks.
SQL stays in ``app/store`` (``app/store/tokens.py`` stores the tokens): modules here import
the store, ``config`` and, in ``tokens`` only, Flask and the API's error shape; ``roles`` and
``signatures`` import no Flask.
"""
