#!/usr/bin/env python3
"""A tiny OAuth 2 / OIDC token endpoint for the secured test broker.

Started and stopped by scripts/kafka.sh when KAFKA_SECURE=1 (see
scripts/kafka/secure.sh); Python standard library only, loopback only, for
tests: it is no identity provider.

  POST /token   client_credentials grant. The client authenticates with HTTP
                Basic (client_secret_basic, what librdkafka's
                sasl.oauthbearer.method=oidc sends) or with client_id and
                client_secret form fields (client_secret_post). Answers
                {"access_token": <JWT>, "token_type": "Bearer", "expires_in": N}
                or 400/401 with an OAuth error object.
  GET  /jwks    the JSON Web Key Set with the public signing key; the broker's
                OAuthBearerValidatorCallbackHandler reads it through
                sasl.oauthbearer.jwks.endpoint.url. Also at
                /.well-known/jwks.json.
  GET  /.well-known/openid-configuration   issuer, token and JWKS URLs.
  GET  /health  200 "ok" (the start script's readiness probe).

The tokens are RS256 JWTs signed with the RSA key given by --key (PEM,
PKCS#8 "PRIVATE KEY" or PKCS#1 "RSA PRIVATE KEY", unencrypted). The RSA
PKCS#1 v1.5 signature is computed here with Python integers, so neither the
openssl CLI nor a crypto package is needed at run time. Claims: iss, sub (the
client id), aud, iat, nbf, exp, jti, scope, client_id.
"""

import argparse
import base64
import hashlib
import hmac
import json
import os
import signal
import sys
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# DER DigestInfo prefix for SHA-256 (RFC 8017, section 9.2, note 1).
SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def int_bytes(n: int) -> bytes:
    return n.to_bytes((n.bit_length() + 7) // 8 or 1, "big")


def der_items(buf: bytes):
    """The (tag, value) pairs of a DER-encoded sequence's contents."""
    items, i = [], 0
    while i < len(buf):
        tag = buf[i]
        length = buf[i + 1]
        i += 2
        if length & 0x80:
            count = length & 0x7F
            length = int.from_bytes(buf[i:i + count], "big")
            i += count
        items.append((tag, buf[i:i + length]))
        i += length
    return items


def load_rsa_key(path: str):
    """(n, e, d, p, q, dp, dq, qinv) of an unencrypted PEM RSA private key."""
    with open(path, "r", encoding="ascii") as f:
        text = f.read()
    kind = None
    lines = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("-----BEGIN "):
            kind = line[len("-----BEGIN "):].rstrip("-").strip()
            continue
        if line.startswith("-----END "):
            break
        if kind:
            lines.append(line)
    if kind not in ("PRIVATE KEY", "RSA PRIVATE KEY"):
        raise ValueError(f"{path}: expected an unencrypted RSA private key, found {kind!r}")
    der = base64.b64decode("".join(lines))
    (tag, body), = der_items(der)
    items = der_items(body)
    if kind == "PRIVATE KEY":  # PKCS#8: version, algorithm, OCTET STRING(PKCS#1)
        (tag, body), = der_items(items[2][1])
        items = der_items(body)
    ints = [int.from_bytes(v, "big") for t, v in items if t == 0x02]
    # RSAPrivateKey: version, n, e, d, p, q, dp, dq, qinv
    return tuple(ints[1:9])


class Signer:
    def __init__(self, key_path: str, kid: str | None):
        self.n, self.e, self.d, self.p, self.q, self.dp, self.dq, self.qinv = load_rsa_key(key_path)
        self.k = (self.n.bit_length() + 7) // 8
        self.kid = kid or hashlib.sha256(int_bytes(self.n)).hexdigest()[:16]

    def sign(self, message: bytes) -> bytes:
        """RSASSA-PKCS1-v1_5 with SHA-256 (RS256)."""
        t = SHA256_DIGEST_INFO + hashlib.sha256(message).digest()
        if self.k < len(t) + 11:
            raise ValueError("RSA key too short")
        em = b"\x00\x01" + b"\xff" * (self.k - len(t) - 3) + b"\x00" + t
        m = int.from_bytes(em, "big")
        # CRT: about four times faster than pow(m, d, n).
        s1 = pow(m, self.dp, self.p)
        s2 = pow(m, self.dq, self.q)
        h = (self.qinv * (s1 - s2)) % self.p
        s = s2 + h * self.q
        if pow(s, self.e, self.n) != m:  # never hand out a bad signature
            raise ValueError("signature self-check failed")
        return s.to_bytes(self.k, "big")

    def jwt(self, claims: dict) -> str:
        header = {"alg": "RS256", "typ": "JWT", "kid": self.kid}
        signing_input = (b64url(json.dumps(header, separators=(",", ":")).encode())
                         + "." + b64url(json.dumps(claims, separators=(",", ":")).encode()))
        return signing_input + "." + b64url(self.sign(signing_input.encode("ascii")))

    def jwks(self) -> dict:
        return {"keys": [{
            "kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.kid,
            "n": b64url(int_bytes(self.n)), "e": b64url(int_bytes(self.e)),
        }]}


class Handler(BaseHTTPRequestHandler):
    server_version = "sendgate-oidc-test/1"
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (time.strftime("%Y-%m-%dT%H:%M:%S"), fmt % args))

    def reply(self, status: int, body, content_type="application/json", headers=None):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        cfg = self.server.cfg
        path = urllib.parse.urlsplit(self.path).path
        if path in ("/jwks", "/.well-known/jwks.json"):
            self.reply(200, cfg.signer.jwks())
        elif path == "/.well-known/openid-configuration":
            self.reply(200, {
                "issuer": cfg.issuer,
                "token_endpoint": cfg.base_url + "/token",
                "jwks_uri": cfg.base_url + "/jwks",
                "grant_types_supported": ["client_credentials"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
                "id_token_signing_alg_values_supported": ["RS256"],
            })
        elif path == "/health":
            self.reply(200, b"ok\n", "text/plain")
        else:
            self.reply(404, {"error": "not_found"})

    def do_POST(self):
        cfg = self.server.cfg
        path = urllib.parse.urlsplit(self.path).path
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if path != "/token":
            self.reply(404, {"error": "not_found"})
            return
        form = {k: v[-1] for k, v in urllib.parse.parse_qs(raw.decode("utf-8", "replace")).items()}
        client_id = client_secret = None
        auth = self.headers.get("Authorization", "")
        if auth[:6].lower() == "basic ":
            try:
                decoded = base64.b64decode(auth[6:].strip()).decode("utf-8")
                user, _, pw = decoded.partition(":")
                # RFC 6749 2.3.1: both parts are form-urlencoded first.
                client_id, client_secret = urllib.parse.unquote_plus(user), urllib.parse.unquote_plus(pw)
            except (ValueError, UnicodeDecodeError):
                pass
        if client_id is None:
            client_id, client_secret = form.get("client_id"), form.get("client_secret")
        expected = cfg.clients.get(client_id or "")
        if expected is None or not hmac.compare_digest(expected.encode(), (client_secret or "").encode()):
            self.reply(401, {"error": "invalid_client", "error_description": "unknown client or wrong secret"},
                       headers={"WWW-Authenticate": 'Basic realm="sendgate-test"'})
            return
        if form.get("grant_type") != "client_credentials":
            self.reply(400, {"error": "unsupported_grant_type",
                             "error_description": "only client_credentials is supported"})
            return
        now = int(time.time())
        claims = {
            "iss": cfg.issuer, "sub": client_id, "aud": cfg.audience,
            "iat": now, "nbf": now, "exp": now + cfg.lifetime,
            "jti": str(uuid.uuid4()), "client_id": client_id,
            "scope": form.get("scope") or cfg.scope,
        }
        self.reply(200, {"access_token": cfg.signer.jwt(claims), "token_type": "Bearer",
                         "expires_in": cfg.lifetime, "scope": claims["scope"]})


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--key", required=True, help="PEM RSA private key that signs the tokens")
    ap.add_argument("--kid", help="key id in the JWT header and JWKS (default: from the key)")
    ap.add_argument("--issuer", help="iss claim (default: http://HOST:PORT)")
    ap.add_argument("--audience", default="kafka", help="aud claim")
    ap.add_argument("--scope", default="kafka", help="scope claim when the request names none")
    ap.add_argument("--lifetime", type=int, default=3600, help="token lifetime, seconds")
    ap.add_argument("--client", action="append", default=[], metavar="ID:SECRET",
                    help="an accepted client (repeatable); also read from OIDC_CLIENTS, space separated")
    ap.add_argument("--pid-file", help="write the process id here once listening")
    args = ap.parse_args()

    clients = {}
    for spec in args.client + os.environ.get("OIDC_CLIENTS", "").split():
        cid, sep, secret = spec.partition(":")
        if not sep or not cid:
            ap.error(f"bad client {spec!r}, want ID:SECRET")
        clients[cid] = secret
    if not clients:
        ap.error("no client configured (--client ID:SECRET)")

    cfg = argparse.Namespace(
        signer=Signer(args.key, args.kid), clients=clients, audience=args.audience,
        scope=args.scope, lifetime=args.lifetime,
        base_url=f"http://{args.host}:{args.port}")
    cfg.issuer = args.issuer or cfg.base_url

    httpd = ThreadingHTTPServer((args.host, args.port), Handler)
    httpd.daemon_threads = True
    httpd.cfg = cfg

    def stop(signum, frame):
        threading.Thread(target=httpd.shutdown, daemon=True).start()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    if args.pid_file:
        with open(args.pid_file + ".tmp", "w") as f:
            f.write(f"{os.getpid()}\n")
        os.replace(args.pid_file + ".tmp", args.pid_file)
    sys.stderr.write(f"oidc_token_server: listening on {cfg.base_url} (kid {cfg.signer.kid}, "
                     f"{len(clients)} client(s), issuer {cfg.issuer}, audience {cfg.audience})\n")
    sys.stderr.flush()
    try:
        httpd.serve_forever()
    finally:
        httpd.server_close()
        sys.stderr.write("oidc_token_server: stopped\n")


if __name__ == "__main__":
    main()
