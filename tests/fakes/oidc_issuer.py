"""A fake OpenID Connect provider: a real HTTP server on 127.0.0.1 with discovery, an
authorization endpoint that consents at once as `user`, a token endpoint that checks the
client secret, the code, the redirect URI and the PKCE verifier (S256), and a JWKS. ID tokens
are real RS256 JWTs signed by a key the JWKS publishes (or, when `sign_with_stranger_key`,
by one it does not)."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

CLIENT_ID = "aicredits-test"
CLIENT_SECRET = "fake-oidc-secret"


class FakeIssuer:
    def __init__(self) -> None:
        self.key = RSAKey.generate_key(2048, parameters={"kid": "k1", "use": "sig", "alg": "RS256"})
        self.stranger = RSAKey.generate_key(2048, parameters={"kid": "k1", "use": "sig", "alg": "RS256"})
        self.user = {"sub": "user-1", "email": "oidc.user@example.com", "email_verified": True, "name": "OIDC User"}
        self.sign_with_stranger_key = False
        self.codes: dict[str, dict] = {}
        self.token_requests: list[dict] = []
        self.authorize_requests: list[dict] = []
        self._server: ThreadingHTTPServer | None = None
        self.url = ""

    # ------------------------------------------------------------ lifecycle
    def start(self) -> FakeIssuer:
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                issuer._get(self)

            def do_POST(self) -> None:
                issuer._post(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/realm"
        # stop() waits for the serving loop's next poll: a tenth of a second, not the default half
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name="fake-oidc",
                         daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def reset(self) -> None:
        self.user = {"sub": "user-1", "email": "oidc.user@example.com", "email_verified": True, "name": "OIDC User"}
        self.sign_with_stranger_key = False
        self.token_requests.clear()
        self.authorize_requests.clear()

    # ------------------------------------------------------------ HTTP
    @staticmethod
    def _send(h: BaseHTTPRequestHandler, status: int, body: dict | None = None, headers: dict | None = None) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        h.send_response(status)
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        if body is not None:
            h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def _get(self, h: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(h.path)
        path = parts.path.removeprefix("/realm")
        if path == "/.well-known/openid-configuration":
            self._send(h, 200, {
                "issuer": self.url, "authorization_endpoint": f"{self.url}/authorize",
                "token_endpoint": f"{self.url}/token", "jwks_uri": f"{self.url}/jwks",
                "response_types_supported": ["code"], "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"], "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"]})
        elif path == "/jwks":
            self._send(h, 200, KeySet([self.key]).as_dict(private=False))
        elif path == "/authorize":
            q = {k: v[0] for k, v in parse_qs(parts.query).items()}
            self.authorize_requests.append(q)
            problems = [name for name, ok in (
                ("client_id", q.get("client_id") == CLIENT_ID), ("response_type", q.get("response_type") == "code"),
                ("scope", "openid" in q.get("scope", "").split()), ("state", bool(q.get("state"))),
                ("nonce", bool(q.get("nonce"))), ("code_challenge_method", q.get("code_challenge_method") == "S256"),
                ("code_challenge", bool(q.get("code_challenge")))) if not ok]
            if problems or not q.get("redirect_uri"):
                self._send(h, 400, {"error": "invalid_request", "missing": problems})
                return
            code = secrets.token_urlsafe(16)
            self.codes[code] = {"redirect_uri": q["redirect_uri"], "challenge": q["code_challenge"],
                                "nonce": q["nonce"], "user": dict(self.user)}
            self._send(h, 302, headers={"Location": q["redirect_uri"] + "?" + urlencode(
                {"code": code, "state": q["state"]})})
        else:
            self._send(h, 404, {"error": "not_found"})

    def _post(self, h: BaseHTTPRequestHandler) -> None:
        if urlsplit(h.path).path.removeprefix("/realm") != "/token":
            self._send(h, 404, {"error": "not_found"})
            return
        length = int(h.headers.get("Content-Length") or 0)
        form = {k: v[0] for k, v in parse_qs(h.rfile.read(length).decode()).items()}
        self.token_requests.append(form)
        client_id, secret = form.get("client_id"), form.get("client_secret")
        auth = h.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            client_id, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
        if client_id != CLIENT_ID or secret != CLIENT_SECRET:
            self._send(h, 401, {"error": "invalid_client"})
            return
        grant = self.codes.pop(form.get("code", ""), None)
        verifier = form.get("code_verifier", "")
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if (form.get("grant_type") != "authorization_code" or grant is None
                or grant["redirect_uri"] != form.get("redirect_uri") or grant["challenge"] != challenge):
            self._send(h, 400, {"error": "invalid_grant"})
            return
        now = int(time.time())
        claims = {"iss": self.url, "aud": CLIENT_ID, "iat": now, "exp": now + 300, "nonce": grant["nonce"],
                  **grant["user"]}
        key = self.stranger if self.sign_with_stranger_key else self.key
        id_token = jwt.encode({"alg": "RS256", "kid": "k1"}, claims, key)
        self._send(h, 200, {"access_token": secrets.token_urlsafe(16), "token_type": "Bearer", "expires_in": 300,
                            "id_token": id_token})
