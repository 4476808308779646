"""`demo/echo` answers every chat feature offline (issue 13, point 12): tool calls (asked for, or
required by tool_choice), JSON mode (json_object and json_schema), and streams of both in
OpenAI's shape, read back with the official `openai` SDK against the in-process gateway; each
call billed like any other."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from aicredits.providers.demo import sample
from tests.inproc import running

MODEL = "demo/echo"
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer", "minimum": 1}, "detailed": {"type": "boolean"}},
        "required": ["city", "unit", "days"]}}}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {
    "type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]}}}
PERSON = {"type": "object", "properties": {
    "name": {"type": "string"}, "age": {"type": "integer"}, "tags": {"type": "array", "items": {"type": "string"}},
    "address": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    "nickname": {"type": "string"}},
    "required": ["name", "age", "tags", "address"], "additionalProperties": False}


@pytest.fixture
async def demo(upstream, tmp_path):
    async with running(f"sqlite:///{tmp_path}/a.db", upstream, tmp_path) as g:
        key = await g.new_key(100_000_000)
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=g.gw), base_url="http://gateway.test")
        client = openai.AsyncOpenAI(api_key=key["key"], base_url="http://gateway.test/v1", http_client=http,
                                    max_retries=0)
        yield g, key, client
        await http.aclose()


def check_weather_args(arguments: str) -> dict:
    args = json.loads(arguments)
    assert set(args) == {"city", "unit", "days"}   # every required property, of its type
    assert isinstance(args["city"], str) and args["unit"] == "celsius" and args["days"] >= 1
    return args


async def streamed_tool_call(client, **kw) -> tuple[str, str, str, str | None]:
    """(id, name, arguments, finish_reason) of a streamed tool call, rebuilt from its deltas."""
    call_id = name = finish = None
    args, pieces = "", 0
    async for chunk in await client.chat.completions.create(model=MODEL, stream=True, **kw):
        assert chunk.model == MODEL and chunk.object == "chat.completion.chunk"
        for choice in chunk.choices:
            for tc in choice.delta.tool_calls or ():
                assert tc.index == 0
                call_id = tc.id or call_id
                name = (tc.function.name if tc.function and tc.function.name else name)
                if tc.function and tc.function.arguments:
                    args += tc.function.arguments
                    pieces += 1
            finish = choice.finish_reason or finish
    assert pieces > 1   # the arguments come in several deltas, as OpenAI sends them
    return call_id, name, args, finish


async def test_a_question_naming_a_tool_gets_a_tool_call_and_its_result_a_text_answer(demo):
    g, key, client = demo
    ask = [{"role": "user", "content": "What is the weather in Pune? Use get weather."}]
    done = await client.chat.completions.create(model=MODEL, messages=ask, tools=[TIME, WEATHER])
    choice = done.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.function.name == "get_weather" and call.id.startswith("call_")
    check_weather_args(call.function.arguments)
    assert done.usage.completion_tokens > 0

    call_id, name, args, finish = await streamed_tool_call(client, messages=ask, tools=[TIME, WEATHER])
    assert (name, finish) == ("get_weather", "tool_calls") and call_id.startswith("call_")
    check_weather_args(args)

    answered = await client.chat.completions.create(model=MODEL, tools=[WEATHER], messages=[
        *ask, {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "31 C and sunny"}])
    assert answered.choices[0].finish_reason == "stop"
    assert answered.choices[0].message.content == "The tool answered: 31 C and sunny"
    rows = await g.usage(key)
    assert len(rows) == 3 and all(r["status"] == 200 and r["cost"] > 0 for r in rows)
    assert await g.admin.verify() == []


async def test_tool_choice_decides_whether_and_which_tool_is_called(demo):
    _, _, client = demo
    plain = [{"role": "user", "content": "hello there"}]
    auto = await client.chat.completions.create(model=MODEL, messages=plain, tools=[WEATHER])
    assert auto.choices[0].finish_reason == "stop" and not auto.choices[0].message.tool_calls
    required = await client.chat.completions.create(model=MODEL, messages=plain, tools=[WEATHER],
                                                    tool_choice="required")
    check_weather_args(required.choices[0].message.tool_calls[0].function.arguments)
    named = await client.chat.completions.create(model=MODEL, messages=plain, tools=[WEATHER, TIME],
                                                 tool_choice={"type": "function", "function": {"name": "get_time"}})
    call = named.choices[0].message.tool_calls[0]
    assert call.function.name == "get_time" and json.loads(call.function.arguments) == {"zone": "example zone"}
    never = await client.chat.completions.create(model=MODEL, tools=[WEATHER], tool_choice="none",
                                                 messages=[{"role": "user", "content": "get_weather please"}])
    assert never.choices[0].message.tool_calls is None
    _, name, _, finish = await streamed_tool_call(client, messages=plain, tools=[WEATHER, TIME],
                                                  tool_choice="required")
    assert (name, finish) == ("get_weather", "tool_calls")


async def test_json_mode_answers_valid_json_streamed_or_not(demo):
    g, _, client = demo
    ask = [{"role": "user", "content": "Describe a person."}]
    obj = await client.chat.completions.create(model=MODEL, messages=ask, response_format={"type": "json_object"})
    assert json.loads(obj.choices[0].message.content) == {
        "reply": "Hello from the aicredits demo model. You said: Describe a person."}
    fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON, "strict": True}}
    person = json.loads((await client.chat.completions.create(model=MODEL, messages=ask,
                                                              response_format=fmt)).choices[0].message.content)
    assert set(person) == {"name", "age", "tags", "address"} and set(person["address"]) == {"city"}
    assert isinstance(person["name"], str) and isinstance(person["age"], int) and person["tags"]
    for response_format in ({"type": "json_object"}, fmt):
        text, finish = "", None
        async for chunk in await client.chat.completions.create(model=MODEL, messages=ask, stream=True,
                                                                response_format=response_format):
            assert chunk.model == MODEL
            for choice in chunk.choices:
                text += choice.delta.content or ""
                finish = choice.finish_reason or finish
        assert finish == "stop" and isinstance(json.loads(text), dict)
    assert await g.admin.verify() == []


async def test_the_responses_api_gets_function_calls_from_the_demo(demo):
    _, _, client = demo
    tool = {"type": "function", "name": "get_weather", "parameters": WEATHER["function"]["parameters"]}
    resp = await client.responses.create(model=MODEL, input="weather in Pune? use get_weather", tools=[tool])
    (call,) = [o for o in resp.output if o.type == "function_call"]
    assert call.name == "get_weather"
    check_weather_args(call.arguments)


def test_sample_values_follow_the_schema():
    assert sample({"type": "object", "properties": {"a": {"const": 3}, "b": {"type": "number", "minimum": 2.5},
                                                    "c": {"type": ["null", "boolean"]}, "d": {"default": "x"},
                                                    "e": {"anyOf": [{"type": "integer"}, {"type": "string"}]}},
                   "required": ["a", "b", "c", "d", "e"]}) == {"a": 3, "b": 2.5, "c": True, "d": "x", "e": 1}
    assert sample({"type": "array", "items": {"enum": ["k"]}, "minItems": 2}) == ["k", "k"]
    assert sample({"type": "object"}) == {}
