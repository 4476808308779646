"""The relay's own work on the yardstick's stream, without sockets: bench/upstream.py's SSE body
(24 events and `data: [DONE]`) split, parsed, metered and re-serialised by the OpenAI provider's
stream (`OpenAIStream.batches`) and the chat relay's handler (`_ChatStream.batch`), as when the
body arrives in one read; the event-loop thread's CPU per stream (`time.thread_time`, median of
7 rounds of 3,000 streams). Compare a change with the code before it as bench/calls_per_request.py
does (PYTHONPATH=<that checkout>/src):

    .venv/bin/python bench/stream_relay.py
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))
from upstream import SSE_BODY


class _Content:
    def __init__(self) -> None:
        self.parts = [SSE_BODY, b""]

    def read_nowait(self) -> bytes:   # (the reader of the code before this method was used)
        return self.parts.pop(0)

    def is_eof(self) -> bool:
        return not self.parts

    async def readany(self) -> bytes:
        return self.parts.pop(0)


class _Resp:
    def __init__(self) -> None:
        self.content = _Content()

    def close(self) -> None:
        pass


class _Chat:
    """The chat service as far as the handler needs it: the usage chunk is not this bench's."""
    def _usage_chunk(self, meter: object, obj: dict, sm: object, upstream: object) -> bytes:
        return b"data: usage\n\n"


async def main(n: int) -> dict:
    from aicredits.providers.openai_compat import OpenAIStream
    from aicredits.services.chat import _ChatStream
    from aicredits.services.metering import Meter
    rounds = []
    for _ in range(7):
        t = time.thread_time()
        for _ in range(n):
            stream = OpenAIStream(_Resp(), 60, "openai", ())   # type: ignore[arg-type]
            meter = Meter("r", None, "chat", 0.0, stream=True)  # type: ignore[arg-type]
            meter.model, meter.include_usage = "gpt-4o-mini", True
            handler = _ChatStream(_Chat(), meter, stream)      # type: ignore[arg-type]
            async for batch in stream.batches():
                handler.batch(batch)
        rounds.append((time.thread_time() - t) / n * 1e6)
    return {"cpu_us_per_stream": round(sorted(rounds)[3], 1)}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--streams", type=int, default=3000, help="streams per round (7 rounds)")
    print(uvloop.run(main(ap.parse_args().streams)))
