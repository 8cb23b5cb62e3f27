"""Smoke tests for the benchmark runner: it runs end to end and its JSON has the expected shape.

These assert nothing about speed (speed is only reported by ``python -m benchmarks``); they
prove the harness measures real work through real relays and prints a complete report. The
raw websocket client both load generators stand on (``benchmarks.wsraw``) is checked against
the ``websockets`` library, RFC 6455's own handshake example and hostile servers.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from benchmarks import reference, wsraw
from benchmarks.servers import nostr_relay_config
from benchmarks.timing import percentile
from websockets.asyncio.server import ServerConnection, serve
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from dvmkit.nostr.keys import Keys

REPO = Path(__file__).resolve().parents[1]
VECTORS = Path(__file__).parent / "vectors" / "nip44.vectors.json"
FIGURE_KEYS = {"key", "group", "subject", "value", "unit", "better", "rounds", "ratios", "note"}


def _run(*args: str) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", *args, "--json", "--quick"],
        cwd=REPO,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    report: dict[str, Any] = orjson.loads(result.stdout)
    for fig in report["figures"]:
        assert fig.keys() >= FIGURE_KEYS
        assert len(fig["rounds"]) >= 3
        assert fig["value"] > 0
    return report


def test_crypto_quick_reports_every_figure_with_ratios_and_goals() -> None:
    report = _run("crypto")
    assert report["benchmark"] == "crypto"
    assert report["quick"] is True
    groups = {fig["group"] for fig in report["figures"]}
    assert groups == {"sign", "verify", "nip44"}
    ours = [fig for fig in report["figures"] if fig["subject"].startswith("dvmkit")]
    assert {fig["group"] for fig in ours} == {"sign", "verify", "nip44"}
    references = {fig["key"] for fig in report["figures"]} - {fig["key"] for fig in ours}
    for fig in ours:
        # Every figure of ours is compared with every reference of its group.
        group_refs = {key for key in references if key.startswith(fig["group"] + ":")}
        assert set(fig["ratios"]) == group_refs
        assert all(value > 0 for value in fig["ratios"].values())
    assert [goal["target"] for goal in report["goals"]] == [0.9] * 4
    assert all(isinstance(goal["met"], bool) for goal in report["goals"])


def test_relay_quick_measures_ours_against_localrelay() -> None:
    report = _run("relay", "--relays", "ours,localrelay")
    assert report["benchmark"] == "relay"
    assert report["subjects"]["ours"]["available"] is True
    assert report["subjects"]["localrelay"]["available"] is True
    keys = {fig["key"] for fig in report["figures"]}
    for measure in ("publish_1", "publish_10", "fanout", "rtt_p50", "rtt_p99"):
        assert {f"{measure}:ours", f"{measure}:localrelay"} <= keys
    for fig in report["figures"]:
        if fig["key"].endswith(":ours"):
            assert set(fig["ratios"]) == {"nostr-sdk LocalRelay"}
        if fig["unit"] != "ms":
            assert fig["extra"]["complete"] is True
            assert fig["extra"]["rejected"] == 0
    # nostr-relay was not requested, so its goals are reported as not measured.
    unmeasured = [g for g in report["goals"] if "nostr-relay" in g["text"]]
    assert unmeasured
    assert all(g["met"] is None for g in unmeasured)
    assert not [n for n in report["notes"] if n.startswith("error")]


def test_runner_rejects_unknown_relay_names() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "relay", "--relays", "strfry"],
        cwd=REPO,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert b"unknown relays: strfry" in result.stderr


def test_nip44_reference_matches_the_official_vectors() -> None:
    # The benchmark's ceiling must do the real NIP-44 work, or its ratio means nothing.
    vectors = orjson.loads(VECTORS.read_bytes())["v2"]["valid"]
    for case in vectors["encrypt_decrypt"]:
        key = bytes.fromhex(case["conversation_key"])
        payload = reference.nip44_encrypt(case["plaintext"], key, bytes.fromhex(case["nonce"]))
        assert payload == case["payload"]
        assert reference.nip44_decrypt(payload, key) == case["plaintext"]
    for case in vectors["get_conversation_key"]:
        shared = Keys(bytes.fromhex(case["sec1"])).shared_x(case["pub2"])
        assert reference.nip44_conversation_key(shared).hex() == case["conversation_key"]


def test_nip44_reference_rejects_a_tampered_payload() -> None:
    key = bytes(range(32))
    raw = bytearray(base64.b64decode(reference.nip44_encrypt("hello", key)))
    raw[40] ^= 1  # one ciphertext bit
    with pytest.raises(ValueError, match="MAC"):
        reference.nip44_decrypt(base64.b64encode(raw).decode(), key)


def test_raw_signer_signatures_verify_with_the_raw_verifier() -> None:
    keys = Keys.generate()
    signer = reference.RawSigner(keys.secret_bytes())
    assert signer.public_key == keys.public_key
    message = bytes(32)
    assert reference.verify(bytes.fromhex(signer.public_key), signer.sign32(message), message)
    assert not reference.verify(bytes.fromhex(signer.public_key), bytes(64), message)


def test_nostr_relay_config_is_generous_and_local() -> None:
    text = nostr_relay_config(port=4321, db_path=Path("/tmp/x.sqlite3"))
    assert "bind: 127.0.0.1:4321" in text
    assert "rate_limits" not in text
    assert "nostr_relay.validators.is_signed" in text
    assert "is_recent" not in text


def test_percentile_is_nearest_rank() -> None:
    samples = [float(i) for i in range(1, 101)]
    assert percentile(samples, 50) == 50.0
    assert percentile(samples, 99) == 99.0
    assert percentile([3.0], 99) == 3.0
    with pytest.raises(ValueError, match="no samples"):
        percentile([], 50)


# -- benchmarks.wsraw ----------------------------------------------------------------------------

# Around every boundary of the length encoding (RFC 6455 §5.2: 7 bits, then 16, then 64).
SIZES = (0, 1, 125, 126, 127, 65535, 65536, 70001)
# RFC 6455 §1.3's example: this nonce's accept key is s3pPLMBiTxaQ9kYGzzhZRbK+xOo=.
RFC_KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
RFC_ACCEPT = b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def _payload(size: int) -> bytes:
    return bytes(i * 7 % 251 for i in range(size))


def _websockets_parse(data: bytes, *, mask: bool) -> Frame:
    """One frame as the ``websockets`` library reads it; fails if ``data`` holds more."""
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    with pytest.raises(StopIteration) as stop:
        next(Frame.parse(reader.read_exact, mask=mask))
    assert not reader.buffer
    frame: Frame = stop.value.value
    return frame


def _unmask(frame: bytes) -> bytes:
    """A client frame as a server would send it: the same frame without its mask (§5.3)."""
    start = 2 + {126: 2, 127: 8}.get(frame[1] & 0x7F, 0)
    mask, body = frame[start : start + 4], frame[start + 4 :]
    clear = bytes(byte ^ mask[i % 4] for i, byte in enumerate(body))
    return frame[:1] + bytes((frame[1] & 0x7F,)) + frame[2:start] + clear


@pytest.mark.parametrize("size", SIZES)
def test_client_frames_are_masked_frames_websockets_reads(size: int) -> None:
    payload = _payload(size)
    built = wsraw.client_frame(payload)
    # The shortest length encoding, as §5.2 requires: 7 bits, else 126 + 16 bits, else 127 + 64.
    assert built[1] & 0x7F == (size if size < 126 else 126 if size < 1 << 16 else 127)
    frame = _websockets_parse(built, mask=True)
    assert (frame.opcode, frame.fin, frame.data) == (Opcode.TEXT, True, payload)
    binary = _websockets_parse(wsraw.client_frame(payload, opcode=wsraw.BINARY), mask=True)
    assert (binary.opcode, binary.data) == (Opcode.BINARY, payload)


def test_every_client_frame_gets_its_own_mask() -> None:
    masks = {wsraw.client_frame(b"same")[2:6] for _ in range(8)}
    assert len(masks) > 1


@pytest.mark.parametrize("size", SIZES)
def test_frame_parser_reads_back_what_client_frame_builds(size: int) -> None:
    payload = _payload(size)
    frame = _unmask(wsraw.client_frame(payload))
    assert wsraw.FrameParser().feed(frame) == ([payload], [])
    # However the stream is cut: at every header boundary, and one byte short of the end.
    parser = wsraw.FrameParser()
    cuts = sorted({0, 1, 2, 4, 10, max(len(frame) - 1, 0), len(frame)})
    pieces = [parser.feed(frame[a:b]) for a, b in itertools.pairwise(cuts)]
    assert [m for messages, _ in pieces for m in messages] == [payload]


def test_frame_parser_reads_a_stream_of_websockets_server_frames() -> None:
    frames = [Frame(Opcode.TEXT, _payload(size)) for size in SIZES]
    frames.insert(3, Frame(Opcode.PING, b"ping?"))
    frames.insert(5, Frame(Opcode.PONG, b"unsolicited"))
    stream = b"".join(f.serialize(mask=False) for f in frames)
    parser = wsraw.FrameParser()
    got = [parser.feed(stream[i : i + 4093]) for i in range(0, len(stream), 4093)]
    assert [m for messages, _ in got for m in messages] == [_payload(size) for size in SIZES]
    assert [p for _, pings in got for p in pings] == [b"ping?"]


def test_frame_parser_joins_fragments_and_keeps_only_each_head() -> None:
    stream = b"".join(
        f.serialize(mask=False)
        for f in (
            Frame(Opcode.TEXT, b"abc", fin=False),
            Frame(Opcode.PING, b"between"),  # control frames may interleave (§5.4)
            Frame(Opcode.CONT, b"def", fin=False),
            Frame(Opcode.CONT, b"ghi"),
            Frame(Opcode.BINARY, _payload(200)),
        )
    )
    assert wsraw.FrameParser().feed(stream) == ([b"abcdefghi", _payload(200)], [b"between"])
    assert wsraw.FrameParser(keep=5).feed(stream) == ([b"abcde", _payload(5)], [b"between"])


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (wsraw.client_frame(b"masked"), "must not be masked"),
        (bytes((0xC1, 0)), "reserved bits"),
        (bytes((0x91, 0)), "reserved bits"),
        (bytes((0x83, 0)), "unknown opcode 3"),
        (bytes((0x8B, 0)), "unknown opcode 11"),
        (bytes((0x89, 126)) + (126).to_bytes(2, "big") + bytes(126), "control frame"),
        (bytes((0x09, 0)), "control frame"),
        (bytes((0x88, 2)) + (1001).to_bytes(2, "big"), "closed the websocket"),
        # Refused from the header alone: nothing is buffered waiting for 2**63 bytes.
        (bytes((0x81, 127)) + (2**63 - 1).to_bytes(8, "big"), "byte frame"),
        (bytes((0x81, 126)) + (201).to_bytes(2, "big"), "a 201-byte frame"),
        (bytes((0x80, 1)) + b"x", "continuation with no message"),
        (bytes((0x01, 1)) + b"a" + bytes((0x81, 1)) + b"b", "inside a fragmented one"),
        (bytes((0x01, 120)) + bytes(120) + bytes((0x80, 120)) + bytes(120), "over 200 bytes"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_frame_parser_refuses_what_rfc_6455_forbids(data: bytes, match: str) -> None:
    parser = wsraw.FrameParser(max_message=200)
    with pytest.raises(wsraw.ProtocolViolation, match=match):
        parser.feed(data)


def test_frame_parser_waits_for_the_rest_of_a_truncated_frame() -> None:
    frame = Frame(Opcode.TEXT, _payload(300)).serialize(mask=False)
    parser = wsraw.FrameParser()
    assert [parser.feed(frame[i : i + 1]) for i in range(len(frame) - 1)] == [([], [])] * (
        len(frame) - 1
    )
    assert parser.feed(frame[-1:]) == ([_payload(300)], [])


def test_upgrade_follows_rfc_6455_example() -> None:
    request = wsraw.upgrade_request(host="127.0.0.1", port=7000, path="/r", key=RFC_KEY)
    assert request.startswith(b"GET /r HTTP/1.1\r\nHost: 127.0.0.1:7000\r\n")
    assert b"\r\nSec-WebSocket-Key: " + RFC_KEY + b"\r\n" in request
    assert b"\r\nSec-WebSocket-Version: 13\r\n" in request
    assert request.endswith(b"\r\n\r\n")
    # Header names are case-insensitive and values may be padded (RFC 7230 §3.2).
    wsraw.check_upgrade(b"HTTP/1.1 101 OK\r\nsec-websocket-ACCEPT:  " + RFC_ACCEPT, RFC_KEY)


@pytest.mark.parametrize(
    ("response", "match"),
    [
        (b"HTTP/1.1 101 Switching\r\nSec-WebSocket-Accept: " + RFC_ACCEPT, "bad Sec-WebSocket"),
        (b"HTTP/1.1 101 Switching\r\nX: " + RFC_ACCEPT, "bad Sec-WebSocket-Accept"),
        (b"HTTP/1.1 200 OK\r\nSec-WebSocket-Accept: " + RFC_ACCEPT, "upgrade refused"),
        (b"", "upgrade refused"),
        (bytes(range(256)) * 300, "upgrade refused"),
    ],
)
def test_check_upgrade_refuses_a_bad_response(response: bytes, match: str) -> None:
    key = RFC_KEY if b"Switching" not in response else base64.b64encode(bytes(16))
    with pytest.raises(wsraw.ProtocolViolation, match=match):
        wsraw.check_upgrade(response, key)


class _Collector(wsraw.Connection):
    def __init__(self) -> None:
        super().__init__()
        self.messages: asyncio.Queue[bytes] = asyncio.Queue()

    def _received(self, messages: list[bytes]) -> None:
        for message in messages:
            self.messages.put_nowait(message)

    def send(self, payload: bytes) -> None:
        self._write(wsraw.client_frame(payload))


async def test_connection_talks_to_a_websockets_server() -> None:
    closed: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()

    async def echo(ws: ServerConnection) -> None:
        await asyncio.wait_for(await ws.ping(b"there?"), 5)  # resolved by our pong
        async for message in ws:
            await ws.send(message)
        closed.set_result(ws.close_code)

    async with serve(echo, "127.0.0.1", 0, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        conn = await _Collector.open(f"ws://127.0.0.1:{port}/relay")
        sent = [b"hello", b"x" * 125, b"y" * 126, b"z" * 70001]
        for payload in sent:
            conn.send(payload)
        assert [await asyncio.wait_for(conn.messages.get(), 5) for _ in sent] == sent
        conn.close()
        assert await asyncio.wait_for(closed, 5) == 1000


@pytest.mark.parametrize(
    "url", ["ws://example.com/", "wss://127.0.0.1/", "http://127.0.0.1/", "ws://10.0.0.1:7/"]
)
async def test_connection_opens_only_loopback_ws_urls(url: str) -> None:
    with pytest.raises(ValueError, match="only ws:// on loopback"):
        await _Collector.open(url)


@pytest.mark.parametrize(
    ("response", "match"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", "upgrade refused"),
        (b"HTTP/1.1 101 Switching\r\nSec-WebSocket-Accept: " + RFC_ACCEPT + b"\r\n\r\n", "bad"),
        (b"\xff\xfe\x00garbage\r\n\r\n", "upgrade refused"),
        (b"HTTP/1.1 101 Switching\r\n" + b"X" * 70_000, "oversized handshake"),
        (b"", "closed the connection"),
    ],
)
async def test_connection_open_fails_precisely_on_a_hostile_server(
    response: bytes, match: str
) -> None:
    handled = asyncio.Event()

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            if response:
                writer.write(response)
                await writer.drain()
                await reader.read()  # until the client drops the connection
        except ConnectionError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            handled.set()

    async with await asyncio.start_server(answer, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        with pytest.raises(wsraw.ProtocolViolation, match=match):
            await _Collector.open(f"ws://127.0.0.1:{port}/")
        await asyncio.wait_for(handled.wait(), 5)
