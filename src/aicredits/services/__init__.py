"""Use cases: plain arguments in, domain objects out."""
