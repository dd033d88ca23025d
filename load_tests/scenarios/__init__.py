"""One Locust HttpUser per traffic shape."""

from load_tests.scenarios.ingest import BrowserVisitor, ServerSdk
from load_tests.scenarios.kpis import BiDashboard

__all__ = ["BiDashboard", "BrowserVisitor", "ServerSdk"]
