"""Helpers shared by the tests: real servers and recording apps."""
