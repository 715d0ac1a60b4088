"""WSGI entry point that gunicorn serves for the test Keystone (``keystone_wsgi:application``).

Keystone 30 ships no ``keystone-wsgi-public`` script, so this module stands in for it.
It runs inside Keystone's own virtual environment, never in the project's. The config
file comes from ``OS_KEYSTONE_CONFIG_FILES``, which ``tests.support.keystone`` sets.
"""

import sys

# oslo.config parses sys.argv when Keystone configures itself; under gunicorn that would
# be gunicorn's own command line, so it must be emptied before keystone is imported.
sys.argv = sys.argv[:1]

from keystone.server import wsgi  # type: ignore[import-not-found]  # noqa: E402

application = wsgi.initialize_public_application()
