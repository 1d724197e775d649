"""Helpers shared by test folders (importable because tests/ is on sys.path via its conftest)."""
