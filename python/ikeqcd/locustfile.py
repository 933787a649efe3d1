"""The ready locustfile: ``locust -f $(python -m ikeqcd.locust --path) --host HOST:PORT``.

It only imports :class:`ikeqcd.locust.QcdUser` (and so its command-line options); copy it
to subclass ``QcdUser`` or to add your own users. See ``ikeqcd.locust`` for the options.
"""

from ikeqcd.locust import QcdUser

__all__ = ["QcdUser"]
