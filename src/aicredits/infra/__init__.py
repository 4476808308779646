"""In-process and Redis implementations of the ports the services use (rate limiter)."""
