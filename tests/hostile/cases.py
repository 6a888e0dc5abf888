"""The hostile-input table: one row per raw request, with its class, its bytes and the
statuses it may get. `CLOSED` in a set means "no answer, the connection was closed" is
acceptable (the client broke the exchange itself, or a head so large that the refusal
races the client's own writes). Placeholders {WP} {AC} {SLUG} {OTHER} are filled with
real keys and chatbot slugs by the runner, {NONE} with a slug that names nothing, new in
each run (limits count per slug in Redis, which outlives a run)."""
from __future__ import annotations

import dataclasses
import gzip
import json
import zlib

CLOSED = 0


@dataclasses.dataclass(frozen=True)
class Case:
    cls: str
    raw: bytes
    expect: frozenset
    api: str  # whose error shape: "wepeople" or "alpinechat"
    responses: int = 1  # pipelined requests answered on one connection
    byte_delay: float = 0.0  # a slow client: seconds between bytes
    slow_after: int = 0  # bytes sent at once before the slow ones (a fast head, a slow body)
    half_close: bool = False  # the client shuts its sending side after the bytes
    head_only: bool = False  # a HEAD request: responses carry no body
    cut_within: float | None = None  # a slow client: the server cuts it within this many seconds

    @property
    def id(self) -> str:
        return f"{self.cls}-{abs(hash(self.raw)) % 10_000:04d}"


def req(method: str, target: str | bytes, headers: list | tuple = (), body: bytes = b"", *,
        host: bool = True, length: bool = True, version: bytes = b"HTTP/1.1") -> bytes:
    target = target.encode() if isinstance(target, str) else target
    lines = [method.encode() + b" " + target + b" " + version]
    if host:
        lines.append(b"Host: hostile.test")
    for header in headers:
        lines.append(header.encode() if isinstance(header, str) else header)
    if body and length:
        lines.append(b"Content-Length: " + str(len(body)).encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


WP_AUTH = "Authorization: Bearer {WP}"
AC_AUTH = "Authorization: Bearer {AC}"
JSON = "Content-Type: application/json"
EVENTS = "/api/v1/ingest/events"
SNAPSHOTS = "/api/v1/ingest/snapshots"
EVENT = {"eventType": "ticket.resolved", "category": "project_management", "actor": {"email": "a@example.com"}}
BATCH = json.dumps({"events": [EVENT]}).encode()
FEEDBACK = b'{"rating": 1, "conversation_id": "00000000-0000-4000-8000-000000000000"}'
TELEMETRY = b'{"kind": "fire", "trigger_key": "hostile"}'
LEAD = b'{"email": "lead@example.com"}'

CASES: list[Case] = []


def add(cls: str, raw: bytes, expect, api: str = "wepeople", **options) -> None:
    CASES.append(Case(cls, raw, frozenset(expect), api, **options))


def _framed(headers, options):
    if any("Transfer-Encoding" in str(header) for header in headers):
        options.setdefault("length", False)  # chunked: no Content-Length unless a case adds one
    return options


def events(body: bytes, headers=(), **options) -> bytes:
    return req("POST", EVENTS, [WP_AUTH, JSON, *headers], body, **_framed(headers, options))


def feedback(body: bytes, headers=(), slug="{SLUG}", **options) -> bytes:
    return req("POST", f"/api/feedback/{slug}", [JSON, *headers], body, **_framed(headers, options))


def deep(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


def raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


# --- baseline: the runner's checks hold for ordinary answers too ---------------------------
add("baseline-ok", req("GET", "/api/v1/ingest/ping", [WP_AUTH]), {200})
add("baseline-ok", req("GET", "/api/healthz"), {200}, "alpinechat")
add("baseline-ok", events(BATCH), {202})
add("baseline-ok", req("GET", "/api/widget-config/{SLUG}"), {200}, "alpinechat")

# --- framing --------------------------------------------------------------------------------
CHUNKED = ["Transfer-Encoding: chunked"]
add("framing-chunked-valid", events(b"%x\r\n%s\r\n0\r\n\r\n" % (len(BATCH), BATCH), CHUNKED), {202})
add("framing-chunked-extension", events(b"%x;name=value\r\n%s\r\n0\r\n\r\n" % (len(BATCH), BATCH), CHUNKED), {202})
add("framing-chunked-bad-size", events(b"zz\r\nabc\r\n0\r\n\r\n", CHUNKED), {400})
add("framing-chunked-bad-size", feedback(b"-5\r\nabc\r\n0\r\n\r\n", CHUNKED), {422}, "alpinechat")
add("framing-chunked-overflow", events(b"ffffffffffffffffffff\r\nabc\r\n0\r\n\r\n", CHUNKED), {400, 413})
add("framing-chunked-short-data", events(b"10\r\nabc\r\n0\r\n\r\n", CHUNKED), {400, 408})
add("framing-chunked-no-crlf", events(b"3\r\nabcX0\r\n\r\n", CHUNKED), {400})
add("framing-chunked-truncated", events(b"5\r\nab", CHUNKED), {400, 408, CLOSED}, half_close=True)
add("framing-chunked-bad-trailer", events(b"%x\r\n%s\r\n0\r\nBad Trailer\r\n\r\n" % (len(BATCH), BATCH), CHUNKED),
    {400, 202})
add("framing-cl-te-conflict", events(b"%x\r\n%s\r\n0\r\n\r\n" % (len(BATCH), BATCH),
                                     [*CHUNKED, "Content-Length: 5"], length=False), {400})
add("framing-cl-te-conflict", feedback(b"3\r\nabc\r\n0\r\n\r\n", ["Content-Length: 3", *CHUNKED], length=False),
    {400, 422}, "alpinechat")
add("framing-te-unknown", events(BATCH, ["Transfer-Encoding: gzip"], length=False), {400, 415, 501})
add("framing-te-identity", events(BATCH, ["Transfer-Encoding: identity"]), {400, 202})
add("framing-te-chunked-not-last", events(b"%x\r\n%s\r\n0\r\n\r\n" % (len(BATCH), BATCH),
                                          ["Transfer-Encoding: chunked, gzip"], length=False), {400, 415})
add("framing-cl-duplicate-same", events(BATCH, [f"Content-Length: {len(BATCH)}"]), {400, 202})
add("framing-cl-duplicate-differ", events(BATCH, ["Content-Length: 3"]), {400})
add("framing-cl-invalid", events(BATCH, ["Content-Length: abc"], length=False), {400})
add("framing-cl-invalid", events(BATCH, ["Content-Length: -1"], length=False), {400})
add("framing-cl-invalid", events(BATCH, ["Content-Length: +5"], length=False), {400})
add("framing-cl-invalid", feedback(FEEDBACK, ["Content-Length: 1 2"], length=False), {400, 422}, "alpinechat")
add("framing-cl-huge", events(b"{}", ["Content-Length: 99999999999999999999999"], length=False), {400, 413})
add("framing-body-truncated", events(b'{"events": [', [f"Content-Length: {len(BATCH)}"], length=False),
    {400, 408, CLOSED}, half_close=True)
add("framing-body-longer-than-cl", req("GET", "/api/healthz", ["Content-Length: 3"], b"XYZ garbage after the body",
                                       length=False), {200, 400, 422}, "alpinechat", responses=2)
add("framing-pipelined", req("GET", "/api/healthz") * 3, {200}, "alpinechat", responses=3)
add("framing-pipelined", events(BATCH) + req("GET", "/api/v1/ingest/ping", [WP_AUTH]), {202, 200}, responses=2)
add("framing-pipelined-then-garbage", req("GET", "/api/healthz") + b"NOT HTTP AT ALL\r\n\r\n",
    {200, 400, 422}, "alpinechat", responses=2)
add("framing-pipelined-bad-middle",
    req("GET", "/api/healthz") + feedback(b"zz\r\n", CHUNKED) + req("GET", "/api/healthz"),
    {200, 400, 422}, "alpinechat", responses=2)
add("framing-garbage", b"GARBAGE\r\n\r\n", {400, 422}, "alpinechat")
add("framing-garbage", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40, {400, 422}, "alpinechat")
add("framing-garbage", b"\r\n\r\n\r\n", {400, 408, 422, CLOSED}, "alpinechat")
add("framing-http2-preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", {400, 404, 422, 505}, "alpinechat")
add("framing-http09", b"GET /api/healthz\r\n\r\n", {200, 400, 422}, "alpinechat")  # httptools reads it as 1.x
add("framing-http10", req("GET", "/api/healthz", host=False, version=b"HTTP/1.0"), {200}, "alpinechat")
add("framing-http-version-bad", req("GET", "/api/healthz", version=b"HTTP/9.9"), {400, 422, 505}, "alpinechat")
add("framing-lf-only", b"GET /api/healthz HTTP/1.1\nHost: x\n\n", {200, 400, 422}, "alpinechat")
add("framing-bare-cr", b"GET /api/healthz HTTP/1.1\rHost: x\r\r", {400, 408, 422}, "alpinechat")
add("framing-request-line-spaces", b"GET  /api/healthz  HTTP/1.1\r\nHost: x\r\n\r\n", {200, 400, 422}, "alpinechat")
add("framing-absolute-form", req("GET", "http://hostile.test/api/healthz"), {200}, "alpinechat")
add("framing-asterisk-form", req("OPTIONS", "*"), {400, 404, 405, 422}, "alpinechat")
add("framing-connect", req("CONNECT", "hostile.test:443"), {400, 404, 405, 422}, "alpinechat")
# No upgrades here (uvicorn runs with ws="none"): the request is answered over HTTP/1.1.
add("framing-upgrade-websocket", req("GET", "/api/healthz", ["Connection: Upgrade", "Upgrade: websocket",
                                                             "Sec-WebSocket-Version: 13"]), {200, 400, 422},
    "alpinechat")
add("framing-upgrade-h2c", req("GET", "/api/v1/ingest/ping", [WP_AUTH, "Connection: Upgrade, HTTP2-Settings",
                                                              "Upgrade: h2c",
                                                              "HTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA"]),
    {200})
add("framing-upgrade-pipelined", req("GET", "/api/healthz", ["Connection: Upgrade", "Upgrade: h2c"])
    + req("GET", "/api/healthz"), {200}, "alpinechat", responses=2)
add("framing-upgrade-with-body", feedback(FEEDBACK, ["Connection: Upgrade", "Upgrade: h2c"]), {422}, "alpinechat")
add("framing-chunked-gzip-framing-broken", events(b"%x\r\n%s\r\nzz\r\n" % (20, gzip.compress(BATCH)[:20]),
                                                  [*CHUNKED, "Content-Encoding: gzip"]), {400})
add("framing-expect-continue", events(BATCH, ["Expect: 100-continue"]), {202})
add("framing-expect-unknown", events(BATCH, ["Expect: teapot"]), {202, 417})

# --- methods ---------------------------------------------------------------------------------
add("method-not-allowed", req("PUT", EVENTS, [WP_AUTH, JSON], BATCH), {405})
add("method-not-allowed", req("DELETE", "/api/lead/{SLUG}", [AC_AUTH]), {405}, "alpinechat")
add("method-not-allowed", req("PATCH", "/api/leads/{SLUG}", [AC_AUTH, JSON], b"{}"), {405}, "alpinechat")
add("method-unknown", req("FOO", "/api/healthz"), {400, 405, 422}, "alpinechat")
add("method-lowercase", req("get", "/api/healthz"), {400, 405, 422}, "alpinechat")
add("method-head", req("HEAD", "/api/healthz"), {200, 405}, "alpinechat", head_only=True)
add("method-trace", req("TRACE", "/api/healthz"), {405}, "alpinechat")
add("method-options-preflight-bad", req("OPTIONS", "/api/chat/{SLUG}", ["Origin: https://evil.example",
                                                                       "Access-Control-Request-Method: DELETE"]),
    {200, 204, 403, 404}, "alpinechat")

# --- headers ----------------------------------------------------------------------------------
add("header-huge-single", req("GET", "/api/healthz", ["X-Big: " + "a" * 40_000]), {431}, "alpinechat")
add("header-huge-single", req("GET", "/api/v1/ingest/ping", [WP_AUTH, "X-Big: " + "a" * 100_000]), {431, CLOSED})
add("header-huge-streamed", req("GET", "/api/healthz", ["X-Big: " + "a" * 16_000_000]), {431, CLOSED}, "alpinechat")
add("header-huge-name", req("GET", "/api/healthz", ["X" * 40_000 + ": v"]), {431, CLOSED}, "alpinechat")
add("header-many", req("GET", "/api/healthz", [f"X-H{i}: v" for i in range(150)]), {431}, "alpinechat")
add("header-many", req("GET", "/api/v1/ingest/ping", [WP_AUTH, *[f"X-H{i}: v" for i in range(2000)]]), {431, CLOSED})
add("header-many-small-total", req("GET", "/api/healthz", ["A: b"] * 99), {200}, "alpinechat")
add("header-bad-name", req("GET", "/api/healthz", ["Bad Name: v"]), {400, 422}, "alpinechat")
add("header-bad-name", req("GET", "/api/healthz", [b"X-\xff: v"]), {400, 422}, "alpinechat")
add("header-no-colon", req("GET", "/api/healthz", ["NoColonHere"]), {400, 422}, "alpinechat")
add("header-nul-value", req("GET", "/api/v1/ingest/ping", [b"Authorization: Bearer wp_live_\x00abc"]), {400})
add("header-ctl-value", req("GET", "/api/healthz", [b"X-A: a\x01b"]), {400, 422, 200}, "alpinechat")
add("header-cr-in-value", req("GET", "/api/healthz", [b"X-A: a\rb"]), {400, 422}, "alpinechat")
add("header-obs-fold", req("GET", "/api/healthz", ["X-A: a", " folded"]), {400, 422, 200}, "alpinechat")
add("header-8bit-value", req("GET", "/api/healthz", [b"X-A: \xe4\xf6\xfc"]), {200, 400, 422}, "alpinechat")
add("header-utf8-token", req("GET", "/api/v1/ingest/ping", ["Authorization: Bearer wp_live_äöü".encode()]), {401, 400})
add("header-host-duplicate", req("GET", "/api/v1/ingest/ping", [WP_AUTH, "Host: other.test"]), {400})
add("header-host-duplicate", req("GET", "/api/healthz", ["Host: other.test"]), {400, 422}, "alpinechat")
add("header-host-missing", req("GET", "/api/healthz", host=False), {200, 400, 422}, "alpinechat")
add("header-host-weird", req("GET", "/api/v1/ingest/ping", ["Authorization: Bearer nope", "Host: a/b\\c"], host=False),
    {401, 400})
add("header-host-empty", req("GET", "/api/v1/ingest/ping", ["Host:"], host=False), {401, 400})

# --- authorization ------------------------------------------------------------------------------
add("auth-missing", req("GET", "/api/v1/ingest/ping"), {401})
add("auth-scheme-only", req("GET", "/api/v1/ingest/ping", ["Authorization: Bearer"]), {401})
add("auth-basic", req("GET", "/api/leads/{SLUG}", ["Authorization: Basic dXNlcjpwYXNz"]), {401}, "alpinechat")
add("auth-lowercase-scheme", req("GET", "/api/v1/ingest/ping", ["Authorization: bearer {WP}"]), {200, 401})
add("auth-long-token", req("GET", "/api/v1/ingest/ping", ["Authorization: Bearer wp_live_" + "x" * 20_000]), {401})
add("auth-wrong-api-key", req("GET", "/api/v1/ingest/ping", [AC_AUTH]), {401})
add("auth-wrong-api-key", req("GET", "/api/leads/{SLUG}", [WP_AUTH]), {401}, "alpinechat")
add("auth-duplicate", req("GET", "/api/v1/ingest/ping", [WP_AUTH, "Authorization: Bearer nope"]), {200, 400, 401})
add("auth-other-tenant", req("GET", "/api/leads/{OTHER}", [AC_AUTH]), {401, 403, 404}, "alpinechat")
add("auth-sql-ish", req("GET", "/api/v1/ingest/ping", ["Authorization: Bearer ' OR '1'='1"]), {401})

# --- content type ---------------------------------------------------------------------------------
add("ctype-missing", req("POST", EVENTS, [WP_AUTH], BATCH), {415})
add("ctype-missing", req("POST", "/api/chat/{SLUG}/telemetry/proactive", [], TELEMETRY), {415}, "alpinechat")
add("ctype-missing", req("POST", "/api/lead/{SLUG}", [AC_AUTH], LEAD), {415}, "alpinechat")
add("ctype-wrong", req("POST", SNAPSHOTS, [WP_AUTH, "Content-Type: text/plain"], b"{}"), {415})
add("ctype-wrong", feedback(FEEDBACK, ["Content-Type: application/x-www-form-urlencoded"]), {415}, "alpinechat")
add("ctype-duplicate", events(BATCH, ["Content-Type: application/json"]), {415})
add("ctype-wrong", req("POST", "/api/escalate/{SLUG}", [AC_AUTH, "Content-Type: multipart/form-data; boundary=x"],
                       b"--x--"), {415}, "alpinechat")
add("ctype-list", req("POST", EVENTS, [WP_AUTH, "Content-Type: application/json, text/plain"], BATCH), {415})
add("ctype-params-garbage", req("POST", EVENTS, [WP_AUTH, "Content-Type: application/json;;;=;"], BATCH),
    {202, 400, 415})
add("ctype-upper", req("POST", EVENTS, [WP_AUTH, "Content-Type: APPLICATION/JSON"], BATCH), {202, 415})
add("charset-bogus", req("POST", EVENTS, [WP_AUTH, "Content-Type: application/json; charset=bogus"], BATCH),
    {202, 400, 415})
add("charset-latin1", req("POST", "/api/feedback/{SLUG}", ["Content-Type: application/json; charset=latin-1"],
                          '{"rating": 1, "conversation_id": "x", "comment": "é"}'.encode("latin-1")),
    {404, 415, 422}, "alpinechat")
add("charset-utf16", req("POST", EVENTS, [WP_AUTH, "Content-Type: application/json; charset=utf-16"],
                         BATCH.decode().encode("utf-16")), {202, 400, 415})
add("charset-utf16-mislabeled", events(BATCH.decode().encode("utf-16")), {400})

# --- content encoding --------------------------------------------------------------------------
GZ = ["Content-Encoding: gzip"]
DEFLATE = ["Content-Encoding: deflate"]
add("encoding-gzip", events(gzip.compress(BATCH), GZ), {202})
add("encoding-gzip", feedback(gzip.compress(FEEDBACK), GZ), {404}, "alpinechat")
add("encoding-gzip", req("POST", SNAPSHOTS, [WP_AUTH, JSON, *GZ],
                         gzip.compress(b'{"snapshotType": "tickets_open", "actor": {"email": "a@example.com"},'
                                       b' "metrics": {"open": 3}}')), {202})
add("encoding-gzip-multimember", events(gzip.compress(BATCH[:10]) + gzip.compress(BATCH[10:]), GZ), {202})
add("encoding-gzip-chunked", events(b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in
                                             [gzip.compress(BATCH)[:20], gzip.compress(BATCH)[20:]]) + b"0\r\n\r\n",
                                    GZ + CHUNKED), {202})
add("encoding-deflate", events(zlib.compress(BATCH), DEFLATE), {202})
add("encoding-deflate-raw", events(raw_deflate(BATCH), DEFLATE), {202})
add("encoding-deflate", req("POST", "/api/chat/{SLUG}/telemetry/proactive", [JSON, *DEFLATE], zlib.compress(TELEMETRY)),
    {200}, "alpinechat")
add("encoding-identity", events(BATCH, ["Content-Encoding: identity"]), {202})
add("encoding-case", events(gzip.compress(BATCH), ["Content-Encoding: GZIP"]), {202})
add("encoding-bomb-gzip", events(gzip.compress(b'{"events": [' + b" " * 30_000_000 + b"]}"), GZ), {413})
add("encoding-bomb-gzip", feedback(gzip.compress(b" " * 5_000_000), GZ), {413}, "alpinechat")
add("encoding-bomb-deflate", events(zlib.compress(b"0" * 20_000_000, 9), DEFLATE), {413})
add("encoding-bomb-nested", events(gzip.compress(gzip.compress(b" " * 10_000_000)), ["Content-Encoding: gzip, gzip"]),
    {415})
add("encoding-bomb-chunked", events(b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in
                                             [gzip.compress(b" " * 8_000_000)]) + b"0\r\n\r\n", GZ + CHUNKED), {413})
add("encoding-corrupt", events(b"this is not gzip", GZ), {400})
add("encoding-corrupt", feedback(b"this is not gzip", GZ), {422}, "alpinechat")
add("encoding-corrupt", events(b"\x78\x9c garbage", DEFLATE), {400})
add("encoding-truncated", events(gzip.compress(BATCH)[:-6], GZ), {400})
add("encoding-truncated", feedback(zlib.compress(FEEDBACK)[:-3], DEFLATE), {422}, "alpinechat")
add("encoding-trailing-garbage", events(gzip.compress(BATCH) + b"GARBAGE", GZ), {400})
add("encoding-bad-crc", events(gzip.compress(BATCH)[:-8] + b"\x00\x00\x00\x00" + gzip.compress(BATCH)[-4:], GZ),
    {400})
add("encoding-empty-body", events(b"", [*GZ, "Content-Length: 0"]), {400})
add("encoding-unknown", events(BATCH, ["Content-Encoding: br"]), {415})
add("encoding-unknown", events(BATCH, ["Content-Encoding: compress"]), {415})
add("encoding-unknown", feedback(FEEDBACK, ["Content-Encoding: zstd"]), {415}, "alpinechat")
add("encoding-unknown", events(BATCH, ["Content-Encoding: x-gzip"]), {415})
add("encoding-stacked", events(gzip.compress(zlib.compress(BATCH)), ["Content-Encoding: deflate, gzip"]), {415})
add("encoding-on-get", req("GET", "/api/v1/ingest/ping", [WP_AUTH, *GZ]), {200})
add("encoding-plain-labeled-gzip", events(BATCH, GZ), {400})

# --- JSON edge cases ---------------------------------------------------------------------------
add("json-bom", events(b"\xef\xbb\xbf" + BATCH), {202, 400})
add("json-bom", feedback(b"\xef\xbb\xbf" + FEEDBACK), {404, 422}, "alpinechat")
add("json-trailing-garbage", events(BATCH + b" garbage"), {400})
add("json-trailing-garbage", feedback(FEEDBACK + b"}"), {422}, "alpinechat")
add("json-duplicate-keys", events(b'{"events": [], "events": [' + json.dumps(EVENT).encode() + b"]}"), {202, 400})
add("json-duplicate-keys", feedback(b'{"rating": 1, "rating": 5, '
                                   b'"conversation_id": "00000000-0000-4000-8000-000000000000"}'),
    {404, 422}, "alpinechat")
add("json-nan", events(b'{"events": [{"eventType": "a.b", "category": "code", "actor": {"email": "a@b.co"},'
                       b' "duration": NaN}]}'), {400, 207})
add("json-infinity", feedback(b'{"rating": Infinity, "conversation_id": "x"}'), {422}, "alpinechat")
add("json-huge-number", events(b'{"events": [{"eventType": "a.b", "category": "code", "actor": {"email": "a@b.co"},'
                               b' "duration": ' + b"9" * 5000 + b"}]}"), {207, 400})
add("json-huge-exponent", events(b'{"events": [{"eventType": "a.b", "category": "code", "actor": {"email": "a@b.co"},'
                                 b' "metadata": {"x": 1e999999}}]}'), {207, 400})
add("json-lone-surrogate", events(b'{"events": [{"eventType": "a.b", "category": "code", "actor": {"email": "a@b.co"},'
                                  b' "metadata": {"x": "\\ud800"}}]}'), {207, 400})
add("json-lone-surrogate", req("POST", "/api/lead/{SLUG}", [AC_AUTH, JSON], b'{"email": "a@b.co", "name": "\\udfff"}'),
    {201, 403, 422, 429}, "alpinechat")
add("json-invalid-utf8", events(b'{"events": [{"eventType": "a.b", "category": "code", '
                                b'"actor": {"email": "\xff\xfe"}}]}'),
    {400})
add("json-invalid-utf8", feedback(b'{"rating": 1, "conversation_id": "\xc3\x28"}'), {422}, "alpinechat")
add("json-nul-in-string", req("POST", "/api/lead/{SLUG}", [AC_AUTH, JSON], b'{"email": "a@b.co", "name": "a\\u0000b"}'),
    {201, 403, 422, 429}, "alpinechat")
add("json-raw-control-char", events(b'{"events": [{"eventType": "a.b\x01", "category": "code", "actor": {}}]}'), {400})
add("json-empty-body", req("POST", EVENTS, [WP_AUTH, JSON, "Content-Length: 0"]), {400})
add("json-empty-body", req("POST", "/api/escalate/{SLUG}", [AC_AUTH, JSON, "Content-Length: 0"]), {422}, "alpinechat")
add("json-null", events(b"null"), {400})
add("json-array-top", feedback(b"[1, 2, 3]"), {422}, "alpinechat")
add("json-string-top", events(b'"events"'), {400})
add("json-truncated", events(BATCH[:-3]), {400})
add("json-comments", events(b'{"events": [] /* comment */}'), {400})
add("json-single-quotes", feedback(b"{'rating': 1}"), {422}, "alpinechat")
add("json-trailing-comma", events(b'{"events": [1,],}'), {400})
add("json-wrong-types", events(b'{"events": "not a list"}'), {400})
add("json-wrong-types", req("POST", "/api/chat/{SLUG}", [AC_AUTH, JSON], b'{"session_id": 12345, "message": ["x"]}'),
    {422}, "alpinechat")

# --- numbers ------------------------------------------------------------------------------------
for duration in (b"-1", b"86401", b"1.5", b"-0", b"1e2", b"18446744073709551616", b"true"):
    add("number-bounds", events(b'{"events": [{"eventType": "a.b", "category": "code", "actor": {"email": "a@b.co"},'
                                b' "duration": ' + duration + b"}]}"), {202, 207, 400})
add("number-enum", feedback(b'{"rating": 2, "conversation_id": "00000000-0000-4000-8000-000000000000"}'), {422},
    "alpinechat")
add("number-float-for-int", feedback(b'{"rating": 1.0, "conversation_id": "00000000-0000-4000-8000-000000000000"}'),
    {404, 422}, "alpinechat")
add("number-big-int", feedback(b'{"rating": 100000000000000000000000000, "conversation_id": "x"}'), {422}, "alpinechat")
add("number-query", req("GET", "/api/leads/{SLUG}?limit=99999999999999999999999", [AC_AUTH]), {400, 422}, "alpinechat")
add("number-query", req("GET", "/api/leads/{SLUG}?limit=-5", [AC_AUTH]), {400, 422}, "alpinechat")
add("number-query", req("GET", "/api/leads/{SLUG}?limit=1e3", [AC_AUTH]), {400, 422}, "alpinechat")

# --- nesting ---------------------------------------------------------------------------------------
add("nesting-deep-body", events(deep(100_000)), {400})
add("nesting-deep-body", feedback(deep(30_000)), {422}, "alpinechat")
add("nesting-deep-metadata", events(b'{"events": [{"eventType": "a.b", "category": "code", '
                                    b'"actor": {"email": "a@b.co"},'
                                    b' "metadata": {"x": ' + deep(5000) + b"}}]}"), {207, 400})
add("nesting-deep-object", req("POST", "/api/chat/{SLUG}/telemetry/proactive", [JSON],
                               b'{"kind": "fire", "trigger_key": "k", "metadata": ' + b'{"a": ' * 3000 + b"1" +
                               b"}" * 3000 + b"}"), {404, 422}, "alpinechat")
add("nesting-wide-object",
    events(json.dumps({"events": [dict(EVENT, metadata={f"k{i}": i for i in range(20_000)})]}).encode()),
    {207, 400})
add("nesting-many-events", events(json.dumps({"events": [EVENT] * 501}).encode()), {413})

# --- paths ------------------------------------------------------------------------------------------
add("path-double-slash", req("GET", "/api//healthz"), {404}, "alpinechat")
add("path-double-slash", req("GET", "/api/v1/ingest//ping", [WP_AUTH]), {404})
add("path-double-slash", req("POST", "/api/v1/ingest//events", [WP_AUTH, JSON], BATCH), {404})
add("path-double-slash", req("GET", "//api/healthz"), {404}, "alpinechat")
add("path-dot-segments", req("GET", "/api/v1/ingest/../../api/healthz"), {404})  # not normalized: no such operation
add("path-dot-segments", req("GET", "/api/widget-config/%2e%2e/%2e%2e/etc/passwd"), {404}, "alpinechat")
add("path-nul", req("GET", "/api/widget-config/a%00b"), {404}, "alpinechat")
add("path-nul", req("GET", "/api/v1/ingest/ping%00", [WP_AUTH]), {404})
add("path-raw-nul", b"GET /api/healthz\x00 HTTP/1.1\r\nHost: x\r\n\r\n", {400, 422}, "alpinechat")
add("path-newline", req("GET", "/api/widget-config/a%0ab"), {404}, "alpinechat")
add("path-crlf-injection", req("GET", "/api/widget-config/a%0d%0aSet-Cookie:%20x=1"), {404}, "alpinechat")
add("path-control", req("GET", "/api/leads/a%01%7fb", [AC_AUTH]), {404}, "alpinechat")
add("path-overlong", req("GET", "/api/widget-config/" + "a" * 8000), {404}, "alpinechat")
add("path-overlong", req("GET", "/api/v1/ingest/" + "a" * 40_000, [WP_AUTH]), {414})
add("path-unicode-raw", req("GET", "/api/widget-config/bötä".encode()), {400, 404, 422}, "alpinechat")
add("path-unicode-encoded", req("GET", "/api/widget-config/b%C3%B6t%F0%9F%98%80"), {404}, "alpinechat")
add("path-invalid-utf8", req("GET", "/api/widget-config/%ff%fe%c3"), {404}, "alpinechat")
add("path-encoded-slash", req("GET", "/api/widget-config/a%2fb"), {404}, "alpinechat")
add("path-backslash", req("GET", "/api\\healthz"), {400, 404, 422}, "alpinechat")
add("path-semicolon", req("GET", "/api/healthz;jsessionid=1"), {404}, "alpinechat")
add("path-trailing-slash", req("GET", "/api/v1/ingest/ping/", [WP_AUTH]), {404, 307, 308})
add("path-fragment", req("GET", "/api/healthz#frag"), {200, 400, 404, 422}, "alpinechat")
add("path-unknown", req("GET", "/api/v1/ingest/nothing-here", [WP_AUTH]), {404})
add("path-percent-bad", req("GET", "/api/widget-config/%zz%"), {400, 404, 422}, "alpinechat")

# --- query ---------------------------------------------------------------------------------------------
add("query-unknown", req("GET", "/api/v1/ingest/ping?debug=1", [WP_AUTH]), {400})
add("query-nul", req("GET", "/api/leads/{SLUG}?limit=%00", [AC_AUTH]), {400, 422}, "alpinechat")
add("query-repeated", req("GET", "/api/leads/{SLUG}?limit=1&limit=2", [AC_AUTH]), {200, 400, 422}, "alpinechat")
add("query-cursor-garbage", req("GET", "/api/leads/{SLUG}?cursor=%ff%00'--", [AC_AUTH]), {200, 400, 422}, "alpinechat")
add("query-huge", req("GET", "/api/healthz?" + "a=1&" * 10_000), {414, 431}, "alpinechat")
add("query-enum", req("GET", "/api/escalations/{SLUG}?status=%00open", [AC_AUTH]), {400, 422}, "alpinechat")

# --- slugs ------------------------------------------------------------------------------------------------
for slug in ("de%00mo", "%00", "a%01b", "x" * 2000, "%27%20OR%201%3D1--", "%F0%9F%98%80", "a%20b", "{OTHER}z",
             "..", "%2e"):
    add("slug-hostile", req("GET", f"/api/widget-config/{slug}"), {404}, "alpinechat")
for method, target, body in (("POST", "/api/chat/de%00mo", b'{"session_id": "abcd", "message": "hi"}'),
                             ("POST", "/api/lead/de%00mo", LEAD),
                             ("POST", "/api/escalate/de%00mo", b'{"email": "a@b.co", "message": "hello"}'),
                             ("POST", "/api/feedback/de%00mo", FEEDBACK),
                             ("POST", "/api/chat/de%00mo/telemetry/proactive", TELEMETRY),
                             ("GET", "/api/leads/de%00mo", b""), ("GET", "/api/escalations/de%00mo", b""),
                             ("GET", "/api/conversations/de%00mo", b""),
                             ("GET", "/api/conversations/de%00mo/00000000-0000-4000-8000-000000000000/messages", b"")):
    add("slug-nul-every-operation", req(method, target, [AC_AUTH, JSON] if body else [AC_AUTH], body), {404},
        "alpinechat")
add("slug-nul-cors", req("OPTIONS", "/api/chat/de%00mo", ["Origin: https://site.example",
                                                          "Access-Control-Request-Method: POST"]), {404}, "alpinechat")
add("slug-nul-cors", req("POST", "/api/feedback/de%00mo", ["Origin: https://site.example", JSON], FEEDBACK), {404},
    "alpinechat")
add("slug-unknown", req("POST", "/api/lead/{NONE}", [AC_AUTH, JSON], LEAD), {401, 403, 404}, "alpinechat")

# --- ids ---------------------------------------------------------------------------------------------------
for conversation in ("not-a-uuid", "00000000-0000-4000-8000-00000000000", "{00000000-0000-4000-8000-000000000000}",
                     "00000000-0000-4000-8000-000000000000%00", "ZZZZZZZZ-ZZZZ-ZZZZ-ZZZZ-ZZZZZZZZZZZZ", "1" * 5000,
                     "00000000-0000-4000-8000-000000000000"):
    add("id-conversation", req("GET", f"/api/conversations/{{SLUG}}/{conversation}/messages", [AC_AUTH]),
        {400, 404, 422}, "alpinechat")
for conversation in ("nope", "00000000000040008000000000000000", "' OR 1=1 --", "\\u0000"):
    add("id-in-body", feedback(b'{"rating": 1, "conversation_id": "' + conversation.encode() + b'"}'), {404, 422},
        "alpinechat")
add("id-worker", events(b'{"events": [{"eventType": "a.b", "category": "code", "actor": {"workerId": "not-a-uuid"}}]}'),
    {207, 400})
add("id-worker", events(b'{"events": [{"eventType": "a.b", "category": "code", "actor": {"workerId": '
                        b'"00000000-0000-4000-8000-000000000000"}}]}'), {207, 400})
add("id-idempotency-key", events(BATCH, ["Idempotency-Key: " + "k" * 10_000]), {202, 400})
add("id-idempotency-key", events(BATCH, ["Idempotency-Key:"]), {202, 400})
add("id-idempotency-key", events(BATCH, ["Idempotency-Key: ключ".encode()]), {202, 400})

# --- sizes ---------------------------------------------------------------------------------------------------
add("size-declared-over-cap", events(b"{}", ["Content-Length: 1048577"], length=False), {413})
add("size-declared-over-cap", feedback(b"{}", ["Content-Length: 65537"], length=False), {413}, "alpinechat")
add("size-over-cap", feedback(b'{"comment": "' + b"a" * 70_000 + b'"}'), {413}, "alpinechat")
add("size-chunked-over-cap", events(b"".join(b"%x\r\n%s\r\n" % (60_000, b" " * 60_000) for _ in range(20))
                                    + b"0\r\n\r\n", CHUNKED), {413})
add("size-at-cap", events(b'{"events": [' + json.dumps(EVENT).encode() + b"]" + b" " * (1_048_576 - len(BATCH)) + b"}"),
    {202})
add("size-whitespace", events(b" " * 1_000_000), {400})
add("size-zero-events", events(b'{"events": []}'), {400})
add("size-long-strings", req("POST", "/api/chat/{SLUG}", [AC_AUTH, JSON],
                             b'{"session_id": "' + b"s" * 60_000 + b'", "message": "x"}'), {422}, "alpinechat")

# --- CORS ------------------------------------------------------------------------------------------------------
add("cors-origin-null", req("POST", "/api/feedback/{SLUG}", ["Origin: null", JSON], FEEDBACK), {403, 404}, "alpinechat")
add("cors-origin-huge", req("GET", "/api/widget-config/{SLUG}", ["Origin: https://" + "a" * 20_000 + ".example"]),
    {200, 403}, "alpinechat")
add("cors-origin-garbage", req("OPTIONS", "/api/feedback/{SLUG}", [b"Origin: \xff\xfe",
                                                                    "Access-Control-Request-Method: POST"]),
    {200, 204, 400, 403, 422}, "alpinechat")

# --- proxies --------------------------------------------------------------------------------------------------------
add("xff-garbage", req("GET", "/api/healthz", ["X-Forwarded-For: not-an-ip, ::::, 999.1.1.1"]), {200}, "alpinechat")
add("xff-spoof-limits", req("POST", "/api/lead/{SLUG}", [AC_AUTH, JSON, "X-Forwarded-For: 203.0.113.9"], LEAD) * 7,
    {201, 403, 429}, "alpinechat", responses=7)  # 5/h per IP: a forged hop must not buy a fresh budget
add("xff-huge", req("GET", "/api/healthz", ["X-Forwarded-For: " + ", ".join(["1.2.3.4"] * 2000)]), {200}, "alpinechat")

# --- slow clients ------------------------------------------------------------------------------------------------
# HEADER_TIMEOUT=1.5, BODY_IDLE_TIMEOUT=1, BODY_TIMEOUT=3 (tests/hostile/conftest.py). Each client would take
# tens of seconds to finish; the server must cut it within its deadline (plus scheduling slack).
add("slow-headers", req("GET", "/api/healthz", ["X-Slow: " + "a" * 60]), {408}, "alpinechat",
    byte_delay=0.25, cut_within=6)
# Cut after a few bytes of the target ("GET /a"): the path is not known yet, so AlpineChat's shape (the default).
add("slow-headers", req("GET", "/api/v1/ingest/ping", [WP_AUTH]), {408}, "alpinechat", byte_delay=0.25, cut_within=6)
add("slow-headers", req("GET", "/api/v1/ingest/ping", [WP_AUTH, "X-Slow: " + "a" * 40]), {408}, byte_delay=0.25,
    slow_after=40, cut_within=6)
add("slow-headers-then-nothing", b"GET /api/healthz HTTP/1.1\r\nHo", {408}, "alpinechat", cut_within=6)
add("slow-idle-connection", b"", {CLOSED}, "alpinechat", cut_within=6)
add("slow-body-trickle", events(BATCH), {408}, byte_delay=0.5, slow_after=len(events(BATCH)) - len(BATCH),
    cut_within=8)
add("slow-body-stalled", events(b'{"events": [', [f"Content-Length: {len(BATCH)}"], length=False), {408},
    cut_within=8)
add("slow-body-stalled", feedback(b'{"rat', ["Content-Length: 80"], length=False), {408}, "alpinechat", cut_within=8)
add("slow-chunked-body", events(b"5\r\n{\"eve\r\n", CHUNKED), {408}, cut_within=8)
