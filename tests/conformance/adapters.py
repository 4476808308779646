"""The conformance suite's view of each adapter: how to make its fake upstream answer (text, tool
calls, JSON, an error, a cut), and how to read back what the gateway sent upstream, in that
provider's own dialect. The tests in this package are written once against this interface."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tests.fakes import anthropic_upstream as anth
from tests.fakes import openai_upstream as oai

# HTTP status each provider uses for "overloaded": OpenAI and Gemini 503, Anthropic 529
OVERLOADED = {"openai": 503, "compatible": 503, "gemini": 503, "azure": 503, "anthropic": 529}


@dataclass
class Call:
    id: str
    name: str
    arguments: dict


class Adapter:
    """One provider behind the gateway, with its fake upstream."""

    name: str
    model: str           # the catalog id the client calls
    fake: Any

    def reply(self, text: str, prompt: int, completion: int) -> None: ...
    def tool_reply(self, calls: list[Call], prompt: int, completion: int) -> None: ...
    def json_reply(self, obj: dict, prompt: int, completion: int) -> None: ...
    def fail(self, status: int, message: str, retry_after: str | None = None) -> None: ...
    def cut(self, text: str, after: int, prompt: int) -> None: ...
    def fail_in_stream(self, message: str) -> None: ...   # the stream opens, then an error event comes first
    def bodies(self) -> list[dict]: ...
    def json_mode_sent(self, body: dict) -> bool: ...
    def tool_result_sent(self, body: dict, call_id: str, content: str) -> bool: ...
    def tools_sent(self, body: dict) -> list[str]: ...

    def reset(self) -> None:
        self.fake.reset()

    def __repr__(self) -> str:
        return self.name


class OpenAIShaped(Adapter):
    """OpenAI, any OpenAI-compatible server, Gemini's OpenAI endpoint, Azure OpenAI."""

    def __init__(self, name: str, model: str, fake: oai.FakeOpenAI) -> None:
        self.name, self.model, self.fake = name, model, fake

    def reply(self, text, prompt, completion):
        self.fake.enqueue(oai.Scenario(content=text, prompt_tokens=prompt, completion_tokens=completion))

    def tool_reply(self, calls, prompt, completion):
        self.fake.enqueue(oai.Scenario(
            tool_calls=[{"id": c.id, "name": c.name, "arguments": json.dumps(c.arguments)} for c in calls],
            prompt_tokens=prompt, completion_tokens=completion))

    def json_reply(self, obj, prompt, completion):
        self.reply(json.dumps(obj), prompt, completion)

    def fail(self, status, message, retry_after=None):
        kind = {400: "invalid_request_error", 429: "rate_limit_exceeded"}.get(status, "server_error")
        self.fake.enqueue(oai.Scenario(status=status, error_message=message, error_type=kind,
                                       headers={"retry-after": retry_after} if retry_after else {}))

    def cut(self, text, after, prompt):
        self.fake.enqueue(oai.Scenario(content=text, prompt_tokens=prompt, cut_after=after))

    def fail_in_stream(self, message):
        self.fake.enqueue(oai.Scenario(content="never sent", error_after=0, error_message=message))

    def bodies(self):
        return [r.body for r in self.fake.chat_requests()]

    def json_mode_sent(self, body):
        return body.get("response_format") == {"type": "json_object"}

    def tool_result_sent(self, body, call_id, content):
        return any(m.get("role") == "tool" and m.get("tool_call_id") == call_id and m.get("content") == content
                   for m in body["messages"])

    def tools_sent(self, body):
        return [t["function"]["name"] for t in body.get("tools") or ()]


class Anthropic(Adapter):
    """The Messages API, translated both ways."""

    def __init__(self, model: str, fake: anth.FakeAnthropic) -> None:
        self.name, self.model, self.fake = "anthropic", model, fake

    def reply(self, text, prompt, completion):
        self.fake.enqueue(anth.Scenario(text=text, input_tokens=prompt, output_tokens=completion))

    def tool_reply(self, calls, prompt, completion):
        self.fake.enqueue(anth.Scenario(
            text="", tool_uses=[{"id": c.id, "name": c.name, "input": c.arguments} for c in calls],
            input_tokens=prompt, output_tokens=completion))

    def json_reply(self, obj, prompt, completion):
        # JSON mode is a forced tool upstream; its input comes back as the message content
        self.fake.enqueue(anth.Scenario(text="", tool_uses=[{"id": "toolu_json", "name": "json_tool_call",
                                                             "input": obj}],
                                        input_tokens=prompt, output_tokens=completion))

    def fail(self, status, message, retry_after=None):
        self.fake.enqueue(anth.Scenario(status=status, error_message=message,
                                        headers={"retry-after": retry_after} if retry_after else {}))

    def cut(self, text, after, prompt):
        self.fake.enqueue(anth.Scenario(text=text, input_tokens=prompt, cut_after=after))

    def fail_in_stream(self, message):
        self.fake.enqueue(anth.Scenario(text="never sent", error_after=0, error_type="rate_limit_error",
                                        error_message=message))

    def bodies(self):
        return [r.body for r in self.fake.message_requests()]

    def json_mode_sent(self, body):
        return body.get("tool_choice") == {"type": "tool", "name": "json_tool_call"}

    def tool_result_sent(self, body, call_id, content):
        for m in body["messages"]:
            for block in m["content"] if isinstance(m["content"], list) else ():
                if block.get("type") == "tool_result" and block.get("tool_use_id") == call_id:
                    inner = block.get("content")
                    text = inner if isinstance(inner, str) else "".join(b.get("text", "") for b in inner or ())
                    return m["role"] == "user" and text == content
        return False

    def tools_sent(self, body):
        return [t["name"] for t in body.get("tools") or ()]
