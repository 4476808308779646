"""The provider edge's redaction (providers/http.py `scrub`, `upstream_message`): a provider's
message reaches the client with its words, without keys or the operator's account identifiers."""

from __future__ import annotations

import orjson
import pytest

from aicredits.providers.http import map_status, scrub, upstream_message
from tests.fakes.anthropic_upstream import org_rate_limit_message as anthropic_rate_limit
from tests.fakes.openai_upstream import org_rate_limit_message as openai_rate_limit

ORG = "org-8bKzPvQ3xR1mN2jL5tY7wC9a"
PROJ = "proj_Ab12Cd34Ef56Gh78Ij90Kl"
UUID = "5f1c2a3b-4d5e-6f70-8192-a3b4c5d6e7f8"


@pytest.mark.parametrize(("message", "secrets", "kept"), [
    (openai_rate_limit(ORG, PROJ), [ORG, PROJ],
     "Rate limit reached for gpt-4o-mini in organization [redacted] (project [redacted]) on tokens per min"),
    (f"Project `{PROJ}` does not have access to model `gpt-4o`", [PROJ],
     "Project `[redacted]` does not have access to model `gpt-4o`"),
    (anthropic_rate_limit(UUID), [UUID],
     "This request would exceed the rate limit for your organization ([redacted]) of 50,000 input tokens"),
    ("Quota exceeded for consumer 'project_number:123456789012'.", ["123456789012"],
     "Quota exceeded for consumer 'project_number:[redacted]'."),
    ("Generative Language API has not been used in project 987654321098 before", ["987654321098"],
     "has not been used in project [redacted] before"),
    ("Permission denied on resource projects/acme-prod-42/locations/us.", ["acme-prod-42"],
     "Permission denied on resource projects/[redacted]/locations/us."),
    ("Workspace wrkspc_01HZX9K2AB is over its limit; user user-AbCdEf1234567890.", ["wrkspc_01HZX9K2AB",
                                                                                 "user-AbCdEf1234567890"],
     "Workspace [redacted] is over its limit; user [redacted]."),
    ("Incorrect API key provided: sk-proj-abcDEF123456; key sk_live_Ab12Cd34 Bearer abc.def", [
        "sk-proj-abcDEF123456", "sk_live_Ab12Cd34", "abc.def"], "Incorrect API key provided: [redacted]"),
])
def test_ids_and_keys_are_stripped_and_the_words_kept(message, secrets, kept):
    out = scrub(message)
    for s in secrets:
        assert s not in out, out
    assert kept in out, out


@pytest.mark.parametrize("message", [
    "This model's maximum context length is 128000 tokens. However, your messages resulted in 130512 tokens.",
    "An org-wide policy blocks user-provided tools; the user_message field is required.",
    "model: claude-sonnet-4-6-20250514 not found (request req_011CT7abcDEF)",
    "Invalid value for 'temperature': 3.5 (max 2).",
])
def test_ordinary_messages_pass_unchanged(message):
    assert scrub(message) == message


def test_the_provider_key_itself_is_stripped_whatever_its_shape():
    assert scrub("bad key 0123456789abcdef0123456789abcdef", ("0123456789abcdef0123456789abcdef",)) == \
        "bad key [redacted]"


@pytest.mark.parametrize("body", [
    {"error": {"message": openai_rate_limit(ORG), "type": "requests", "code": "rate_limit_exceeded"}},
    [{"error": {"code": 429, "message": openai_rate_limit(ORG), "status": "RESOURCE_EXHAUSTED"}}],   # Gemini
    {"type": "error", "error": {"type": "rate_limit_error", "message": openai_rate_limit(ORG)}},     # Anthropic
])
@pytest.mark.parametrize("status", [400, 404, 429, 500, 503])
def test_every_error_shape_and_status_is_cleaned(body, status):
    exc = map_status(status, orjson.dumps(body), {}, "p")
    assert ORG not in exc.message and "in organization [redacted] on tokens per min" in exc.message
    assert ORG not in upstream_message(orjson.dumps(body))
