"""WSGI middlewares for OpenStack-style APIs, shipped as PasteDeploy filter factories.

Importing the package is light: each filter module imports what it needs (eventlet,
keystonemiddleware, storage clients) itself.
"""

__version__ = "0.1.0"
