"""Following an OpenAI-shaped chat stream: what was delivered, how it ended, its usage.

Output delivered: content, reasoning and refusal deltas, and the name and argument fragments of
tool calls and of legacy `function_call` deltas."""

from __future__ import annotations

from aicredits.domain.pricing import TokenUsage
from aicredits.domain.usage import usage_from_openai


class StreamMeter:
    """Observes each parsed chunk the client is sent."""

    __slots__ = ("_parsed", "_parsed_from", "created", "done", "error", "finished", "fragments", "id", "model",
                 "text_bytes", "usage")

    def __init__(self) -> None:
        self.text_bytes = 0
        self.fragments = 0
        self.finished: dict[int, str] = {}
        self.usage: dict | None = None
        self.error: dict | None = None
        self.done = False
        self.model: str | None = None
        self.id: str | None = None
        self.created: int | None = None
        self._parsed_from: object = None
        self._parsed: TokenUsage | None = None

    def observe(self, chunk: dict) -> None:
        if not isinstance(chunk, dict):
            raise TypeError("a stream event must be a JSON object")
        if self.id is None:
            self.id = chunk.get("id")
            self.model = chunk.get("model")
            self.created = chunk.get("created")
        err = chunk.get("error")
        if err is not None:
            self.error = err if isinstance(err, dict) else {"message": str(err)}
        usage = chunk.get("usage")
        if usage is not None:   # OpenAI sends "usage": null on every chunk but the last
            self.usage = usage
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            if not isinstance(delta, dict):
                raise TypeError("a choice's delta must be an object")
            content = delta.get("content")
            if content:
                self.text_bytes += len(content.encode("utf-8", "surrogatepass"))
                self.fragments += 1
            if len(delta) > (content is not None):   # more than a content (most chunks are just that)
                self._other_output(delta)
            reason = choice.get("finish_reason")
            if reason:
                self.finished[choice.get("index", 0)] = reason

    def _other_output(self, delta: dict) -> None:
        """A delta's output other than its content: reasoning, a refusal, tool-call fragments."""
        for field in ("reasoning_content", "reasoning"):   # reasoning streamed by some servers
            thought = delta.get(field)
            if thought and isinstance(thought, str):
                self.text_bytes += len(thought.encode("utf-8", "surrogatepass"))
                self.fragments += 1
        refusal = delta.get("refusal")
        if refusal:
            self.text_bytes += len(refusal.encode("utf-8", "surrogatepass"))
            self.fragments += 1
        calls = [call.get("function") or {} for call in delta.get("tool_calls") or ()]
        legacy = delta.get("function_call")   # the pre-tools form: {"name", "arguments"} fragments
        if legacy is not None:
            calls.append(legacy)
        for fn in calls:
            piece = (fn.get("name") or "") + (fn.get("arguments") or "")
            if piece:
                self.text_bytes += len(piece.encode("utf-8", "surrogatepass"))
                self.fragments += 1

    def reported(self) -> TokenUsage | None:
        """The usage seen last, read as `usage_from_openai` reads it (None: none, or not valid
        counts); read once however often it is asked for."""
        if self.usage is not self._parsed_from:
            self._parsed_from = self.usage
            self._parsed = usage_from_openai(self.usage)
        return self._parsed

    @property
    def delivered_output(self) -> bool:
        return self.fragments > 0

    @property
    def error_finish(self) -> bool:
        """A choice ended with finish_reason "error": the upstream failed, whatever followed."""
        return "error" in self.finished.values()

    @property
    def complete(self) -> bool:
        """A clean end: every choice finished and [DONE] seen, no error."""
        return self.done and bool(self.finished) and self.error is None
