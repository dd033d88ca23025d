"""The RACE dashboard: server-rendered pages over the read endpoints, signed in by cookie."""
