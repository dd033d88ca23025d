"""Racetrack load tests (Locust): scenarios, payloads, and the one-command runner `python -m load_tests.run`."""
