"""Racetrack load test (Locust). Imports only: the traffic shapes live in load_tests/scenarios/.

    # everything in one command: a local server, a fresh database, SLO and reconciliation checks
    .venv/bin/python -m load_tests.run --users 20 --spawn-rate 10 --duration 30s

    # plain Locust against a running server (web UI on :8089), keys of a dedicated site exported
    LOAD_TEST_WRITE_KEY=wk_... LOAD_TEST_READ_KEY=rk_... \
        .venv/bin/locust -f load_tests/locustfile.py --host http://127.0.0.1:8000

Configuration: LOAD_TEST_* environment variables, see load_tests/config.py.
"""

from load_tests.scenarios import BiDashboard, BrowserVisitor, ServerSdk

__all__ = ["BiDashboard", "BrowserVisitor", "ServerSdk"]
