"""Pure domain logic: no I/O, no web, ORM or HTTP-client imports."""
