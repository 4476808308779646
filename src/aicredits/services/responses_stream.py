"""Chat completion chunks -> OpenAI Responses stream events (pure; no I/O).

The sequence follows OpenAI's: response.created, response.in_progress, then per output item
output_item.added -> (content_part.added -> output_text.delta ... -> output_text.done ->
content_part.done | function_call_arguments.delta ... -> function_call_arguments.done) ->
output_item.done, and a terminal response.completed (or response.incomplete when the model
stopped at its token limit or a content filter). Every event has `event:` and `data:` lines
and a sequence_number; there is no [DONE]. Items are emitted one after another: a tool call
starting closes the message before it, as OpenAI does.
"""

from __future__ import annotations

import time

import orjson

from aicredits.services.responses_translate import (
    call_item,
    message_item,
    new_id,
    response_shell,
    status_of,
    text_part,
)

INCOMPLETE = ("length", "content_filter")


def sse(kind: str, data: dict) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


class ResponsesEvents:
    def __init__(self, body: dict, resp_id: str | None = None) -> None:
        self.body = body
        self.id = resp_id or new_id("resp")
        self.created = int(time.time())
        self.seq = 0
        self.items: list[dict | None] = []      # by output_index; None while the item is open
        self.finish: str | None = None
        self._msg: dict | None = None           # the open message: index, id, parts
        self._call: dict | None = None          # the open function call
        self._calls: dict[int, dict] = {}       # chat tool_calls index -> call state

    def event(self, kind: str, **fields: object) -> bytes:
        data = {"type": kind, "sequence_number": self.seq, **fields}
        self.seq += 1
        return sse(kind, data)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> list[bytes]:
        shell = response_shell(self.body, self.id, self.created)
        return [self.event("response.created", response=shell), self.event("response.in_progress", response=shell)]

    def chunk(self, obj: dict) -> list[bytes]:
        out: list[bytes] = []
        for choice in obj.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            if delta.get("content"):
                self._delta("output_text", delta["content"], out)
            if delta.get("refusal"):
                self._delta("refusal", delta["refusal"], out)
            for tc in delta.get("tool_calls") or ():
                if isinstance(tc, dict):
                    self._tool(tc, out)
            if choice.get("finish_reason"):
                self.finish = choice["finish_reason"]
        return out

    def finish_events(self, usage: dict) -> list[bytes]:
        """Close what is open and end with the terminal event carrying `usage`."""
        out: list[bytes] = []
        self._close_open(out)
        if not any(self.items):   # no output at all: an empty message, so output_text is ""
            self._open_part("output_text", out)
            self._close_message(out)
        status, details = status_of(self.finish)
        resp = response_shell(self.body, self.id, self.created, status)
        resp.update(output=[i for i in self.items if i is not None], incomplete_details=details, usage=usage)
        out.append(self.event("response.completed" if status == "completed" else "response.incomplete",
                              response=resp))
        return out

    def error(self, err: dict) -> bytes:
        return self.event("error", code=str(err.get("type") or "upstream_error"),
                          message=str(err.get("message") or "The upstream failed mid-stream."), param=None)

    # ------------------------------------------------------------------ message items
    def _open_message(self, out: list[bytes]) -> dict:
        self._close_open(out)
        m = self._msg = {"index": len(self.items), "id": new_id("msg"), "parts": []}
        self.items.append(None)
        out.append(self.event("response.output_item.added", output_index=m["index"],
                              item=message_item(m["id"], [], "in_progress")))
        return m

    def _open_part(self, kind: str, out: list[bytes]) -> dict:
        m = self._msg or self._open_message(out)
        if m["parts"]:
            self._close_part(out)
        part = text_part("") if kind == "output_text" else {"type": "refusal", "refusal": ""}
        m["parts"].append(part)
        out.append(self.event("response.content_part.added", item_id=m["id"], output_index=m["index"],
                              content_index=len(m["parts"]) - 1, part=part))
        m["open"] = True
        return part

    def _delta(self, kind: str, text: str, out: list[bytes]) -> None:
        m = self._msg
        if m is None or not m.get("open") or m["parts"][-1]["type"] != kind:
            self._open_part(kind, out)
            m = self._msg
            assert m is not None        # _open_part opened it
        part = m["parts"][-1]
        where = {"item_id": m["id"], "output_index": m["index"], "content_index": len(m["parts"]) - 1}
        if kind == "output_text":
            part["text"] += text
            out.append(self.event("response.output_text.delta", **where, delta=text, logprobs=[]))
        else:
            part["refusal"] += text
            out.append(self.event("response.refusal.delta", **where, delta=text))

    def _close_part(self, out: list[bytes]) -> None:
        m = self._msg
        if m is None or not m.get("open"):
            return
        part = m["parts"][-1]
        where = {"item_id": m["id"], "output_index": m["index"], "content_index": len(m["parts"]) - 1}
        if part["type"] == "output_text":
            out.append(self.event("response.output_text.done", **where, text=part["text"], logprobs=[]))
        else:
            out.append(self.event("response.refusal.done", **where, refusal=part["refusal"]))
        out.append(self.event("response.content_part.done", **where, part=part))
        m["open"] = False

    def _close_message(self, out: list[bytes]) -> None:
        m = self._msg
        if m is None:
            return
        self._close_part(out)
        item = message_item(m["id"], m["parts"], "incomplete" if self.finish in INCOMPLETE else "completed")
        out.append(self.event("response.output_item.done", output_index=m["index"], item=item))
        self.items[m["index"]] = item
        self._msg = None

    # ------------------------------------------------------------------ function calls
    def _tool(self, tc: dict, out: list[bytes]) -> None:
        fn = tc.get("function") or {}
        c = self._calls.get(tc.get("index", 0))
        if c is None:
            self._close_open(out)
            c = {"index": len(self.items), "id": new_id("fc"), "call_id": tc.get("id") or new_id("call"),
                 "name": fn.get("name") or "", "args": "", "open": True}
            self.items.append(None)
            self._calls[tc.get("index", 0)] = self._call = c
            out.append(self.event("response.output_item.added", output_index=c["index"],
                                  item=call_item(c["id"], c["call_id"], c["name"], "", "in_progress")))
        if fn.get("name") and not c["name"]:
            c["name"] = fn["name"]
        args = fn.get("arguments")
        if args and c["open"]:
            c["args"] += args
            out.append(self.event("response.function_call_arguments.delta", item_id=c["id"],
                                  output_index=c["index"], delta=args))

    def _close_call(self, out: list[bytes]) -> None:
        c = self._call
        if c is None:
            return
        out.append(self.event("response.function_call_arguments.done", item_id=c["id"], output_index=c["index"],
                              name=c["name"], arguments=c["args"]))
        item = call_item(c["id"], c["call_id"], c["name"], c["args"])
        out.append(self.event("response.output_item.done", output_index=c["index"], item=item))
        self.items[c["index"]] = item
        c["open"] = False
        self._call = None

    def _close_open(self, out: list[bytes]) -> None:
        if self._msg is not None:
            self._close_message(out)
        if self._call is not None:
            self._close_call(out)
