"""Racetrack load tests (Locust): scenarios, payloads, and the one-command runner `python -m load_tests.run`."""

import importlib.util as _util
import sys as _sys

# The runner needs the `load` extra (./scripts/run installs it); say so rather than a traceback.
_MISSING = [name for name in ("requests", "psutil", "locust") if _util.find_spec(name) is None]
if _MISSING:
    print(
        f"load test not run: {', '.join(_MISSING)} not installed; install the load extra with"
        " `.venv/bin/pip install -e '.[load]'` (./scripts/run does it)",
        file=_sys.stderr,
    )
    raise SystemExit(2)
