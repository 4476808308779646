"""The OpenAI-compatible HTTP surface (plain ASGI: no framework on the hot path)."""
