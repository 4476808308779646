"""Image generation through the gateway with the official openai SDK: per-image prices by model,
size and quality, held for n images and charged for the images returned."""

from __future__ import annotations

import openai
import pytest

from tests.api.media_helpers import image_micros, inr, spent
from tests.fakes.openai_upstream import Scenario


def client(gateway, key) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.v1, api_key=key["key"], max_retries=0)


@pytest.fixture(scope="module")
def shared_key(gateway):
    """One key for the refusals (creating a key runs the CLI): none of them may spend anything."""
    return gateway.create_key(credits="100")


def image_requests(upstream):
    return [r for r in upstream.requests if r.path == "/v1/images/generations"]


def test_dalle3_hd_wide_is_charged_its_price(gateway, upstream, key):
    raw = client(gateway, key).images.with_raw_response.generate(
        model="openai/dall-e-3", prompt="A serene view of the Himalayas at sunrise", size="1792x1024",
        quality="hd", style="natural")
    resp = raw.parse()
    assert len(resp.data) == 1 and resp.data[0].url and resp.data[0].revised_prompt
    sent = image_requests(upstream)[-1].body
    assert sent == {"model": "dall-e-3", "prompt": "A serene view of the Himalayas at sunrise", "n": 1,
                    "size": "1792x1024", "quality": "hd", "style": "natural"}
    want = image_micros(gateway.catalog()["openai/dall-e-3"], "1792x1024", "hd", 1)
    assert raw.headers["x-aicredits-cost"] == inr(want)
    assert raw.headers["x-request-id"] and "x-aicredits-balance" in raw.headers
    assert spent(gateway, key) == want


def test_default_model_is_dalle3_standard_square(gateway, upstream, key):
    raw = client(gateway, key).images.with_raw_response.generate(prompt="a lighthouse", response_format="b64_json")
    assert raw.parse().data[0].b64_json
    sent = image_requests(upstream)[-1].body
    assert (sent["model"], sent["size"], sent["quality"], sent["response_format"]) == \
        ("dall-e-3", "1024x1024", "standard", "b64_json")
    assert raw.headers["x-aicredits-cost"] == inr(image_micros(gateway.catalog()["openai/dall-e-3"],
                                                               "1024x1024", "standard", 1))


def test_dalle2_three_images(gateway, upstream, key):
    raw = client(gateway, key).images.with_raw_response.generate(model="dall-e-2", prompt="three cats", n=3,
                                                                 size="512x512")
    assert len(raw.parse().data) == 3
    sent = image_requests(upstream)[-1].body
    assert sent["n"] == 3 and sent["size"] == "512x512" and "quality" not in sent
    want = image_micros(gateway.catalog()["openai/dall-e-2"], "512x512", "standard", 3)
    assert raw.headers["x-aicredits-cost"] == inr(want)
    assert spent(gateway, key) == want


def test_fewer_images_returned_than_asked_charges_only_those(gateway, upstream, key):
    raw = client(gateway, key).images.with_raw_response.generate(model="dall-e-2", prompt="dogs [return:2]", n=4,
                                                                 size="256x256")
    assert len(raw.parse().data) == 2
    want = image_micros(gateway.catalog()["openai/dall-e-2"], "256x256", "standard", 2)
    assert raw.headers["x-aicredits-cost"] == inr(want)
    assert spent(gateway, key) == want
    assert gateway.credits(key["key"])["held"] == 0


def test_gpt_image_auto_quality_is_charged_as_reported(gateway, upstream, key):
    raw = client(gateway, key).images.with_raw_response.generate(model="gpt-image-1", prompt="a robot",
                                                                 response_format="url")
    resp = raw.parse()
    assert resp.data[0].b64_json and resp.quality == "medium"
    sent = image_requests(upstream)[-1].body
    assert sent["quality"] == "auto" and sent["size"] == "1024x1024" and "response_format" not in sent
    entry = gateway.catalog()["openai/gpt-image-1"]
    assert raw.headers["x-aicredits-cost"] == inr(image_micros(entry, "1024x1024", "medium", 1))
    raw = client(gateway, key).images.with_raw_response.generate(model="gpt-image-1", prompt="a robot",
                                                                 quality="high", size="1536x1024")
    assert raw.headers["x-aicredits-cost"] == inr(image_micros(entry, "1536x1024", "high", 1))


def test_gpt_image_auto_quality_is_held_as_high(gateway, upstream):
    entry = gateway.catalog()["openai/gpt-image-1"]
    high = image_micros(entry, "1024x1024", "high", 1)
    key = gateway.create_key(credits=inr(high - 1))
    with pytest.raises(openai.APIStatusError) as exc:
        client(gateway, key).images.generate(model="gpt-image-1", prompt="a robot")
    assert exc.value.status_code == 402 and image_requests(upstream) == []
    ok = client(gateway, key).images.with_raw_response.generate(model="gpt-image-1", prompt="a robot",
                                                                quality="medium")
    assert ok.headers["x-aicredits-cost"] == inr(image_micros(entry, "1024x1024", "medium", 1))


@pytest.mark.parametrize("kwargs, param", [
    ({"model": "dall-e-3", "size": "512x512"}, "size"),
    ({"model": "dall-e-2", "size": "1792x1024"}, "size"),
    ({"model": "dall-e-3", "n": 2}, "n"),
    ({"model": "dall-e-2", "n": 11}, "n"),
    ({"model": "dall-e-2", "quality": "hd"}, "quality"),
    ({"model": "dall-e-3", "quality": "ultra"}, "quality"),
    ({"model": "dall-e-3", "response_format": "jpeg"}, "response_format"),
    ({"model": "dall-e-2", "prompt": "x" * 1001}, "prompt"),
    ({"model": "dall-e-3", "prompt": "x" * 4001}, "prompt"),
    ({"model": "dall-e-2", "style": "vivid"}, "style"),
    ({"model": "gpt-4o-mini"}, "model"),
])
def test_invalid_requests_are_400_and_free(gateway, upstream, shared_key, kwargs, param):
    key = shared_key
    args = {"prompt": "a cat", **kwargs}
    with pytest.raises(openai.BadRequestError) as exc:
        client(gateway, key).images.generate(**args)
    assert exc.value.body["type"] == "invalid_request_error" and exc.value.body.get("param") == param
    assert image_requests(upstream) == []
    assert spent(gateway, key) == 0


def test_missing_prompt_is_400(gateway, shared_key):
    import httpx
    key = shared_key
    r = httpx.post(gateway.v1 + "/images/generations", json={"model": "dall-e-3"},
                   headers={"Authorization": f"Bearer {key['key']}"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "prompt"


def test_upstream_error_charges_nothing(gateway, upstream, key):
    upstream.enqueue(Scenario(status=400, error_type="invalid_request_error",
                              error_message="Your request was rejected by the safety system."))
    with pytest.raises(openai.BadRequestError) as exc:
        client(gateway, key).images.generate(model="dall-e-3", prompt="something")
    assert "safety system" in exc.value.body["message"]
    credits = gateway.credits(key["key"])
    assert credits["total_spent"] == 0 and credits["held"] == 0


def test_wallet_too_small_is_402(gateway, upstream):
    key = gateway.create_key(credits="1")
    with pytest.raises(openai.APIStatusError) as exc:
        client(gateway, key).images.generate(model="dall-e-3", prompt="a cat", quality="hd")
    assert exc.value.status_code == 402 and exc.value.body["type"] == "insufficient_credits"
    assert image_requests(upstream) == []
