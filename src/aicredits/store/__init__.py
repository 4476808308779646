"""Persistence: the only package that talks to a database."""
