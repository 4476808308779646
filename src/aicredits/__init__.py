"""aicredits: a self-hostable, OpenAI-compatible LLM gateway sold on prepaid INR credits."""

__version__ = "0.1.0"
