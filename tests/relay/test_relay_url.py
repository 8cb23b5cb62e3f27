"""relay_url: every text is a dialable ws(s) URL or a precise RelayError, and the pool
refuses the second kind instead of crashing on it.

Hosts and ports that do not parse used to reach a connection task, where urllib (a port out
of range), the resolver's IDNA step (an empty or 64-character label) or websockets raised
ValueError inside the pool's task group and stopped the pool. Only 127.0.0.1, localhost and
::1 are dialled here.
"""

from __future__ import annotations

import asyncio
import socket
import string
from urllib.parse import urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.uri import parse_uri

from dvmkit.errors import RelayError
from dvmkit.nostr.event import sign_event
from dvmkit.nostr.keys import Keys
from dvmkit.relay.pool import RelayPool, Timeouts, relay_url

FAST = Timeouts(reconnect_initial=0.05, reconnect_max=0.5, nip11=2.0, publish=3.0, eose=3.0)
URL_CHARS = string.ascii_letters + string.digits + "-._~:/?#[]@!$&'()*+,;=%"

BAD = [
    ("ws://[::1", "host does not parse"),
    ("ws://127.0.0.1:99999", "port 99999 is outside 1-65535"),
    ("ws://h:65536", "port 65536 is outside 1-65535"),
    ("ws://h:0", "port 0 is outside 1-65535"),
    ("ws://h:-1", "'h:-1' do not parse"),
    ("ws://h:80:90", "'h:80:90' do not parse"),
    ("ws://[::1]x:80", r"'\[::1\]x:80' do not parse"),
    ("ws://h:9 x", "not ' '"),
    ("ws://h\t:1", r"not '\\t'"),
    ("ws://h\x00", r"not '\\x00'"),
    ("ws://é.example", "not 'é'"),
    ("ws://h/a\\b", r"not '\\\\'"),
    ("ws://", "must name a host"),
    ("ws://:7777", "must name a host"),
    ("ws:///path", "must name a host"),
    ("ws://user:secret@h", "user information"),
    ("ws://h/#top", "fragment"),
    ("ws://h#", "fragment"),
    ("ws://h/%zz", "percent-encoded"),
    ("ws://a..b", "not a DNS name"),
    ("ws://.a", "not a DNS name"),
    ("ws://" + "a" * 64 + ".example", "not a DNS name"),
    ("ws://a!b", "not a DNS name"),
    ("ws://" + "a." * 127 + "a", "longer than 253"),
    ("ws://[fe80::1%25eth0]", "zone ids are not supported"),
    ("ws://[v1.x]", "not an IPv6 address"),
    ("ws://[1.2.3.4]", "IPv4 address cannot be in brackets"),
    ("ws://h/" + "a" * 3000, "at most 2048 characters"),
    ("http://127.0.0.1:1", "ws:// or wss://"),
    ("ws:/h", "ws:// or wss://"),
    ("wss:h", "ws:// or wss://"),
    ("", "ws:// or wss://"),
]

GOOD = [
    (" WSS://Relay.Example:443/ ", "wss://relay.example"),
    ("ws://127.0.0.1:7777/", "ws://127.0.0.1:7777"),
    ("ws://[::1]:7777", "ws://[::1]:7777"),
    ("ws://[0:0::1]", "ws://[::1]"),
    ("ws://h:0080/p?q=1", "ws://h/p?q=1"),
    ("wss://h:80", "wss://h:80"),
    ("ws://h:", "ws://h"),
    ("ws://h?", "ws://h"),
    ("ws://h.:1//", "ws://h.:1"),
    ("ws://my_relay-1.example/Path%20x/", "ws://my_relay-1.example/Path%20x"),
    ("ws://h/a@b?c=[d]", "ws://h/a@b?c=[d]"),
]


@pytest.mark.parametrize(("url", "message"), BAD)
def test_undialable_urls_raise_a_precise_relay_error(url: str, message: str) -> None:
    with pytest.raises(RelayError, match=message):
        relay_url(url)


@pytest.mark.parametrize(("url", "normal"), GOOD)
def test_dialable_urls_are_normalised(url: str, normal: str) -> None:
    assert relay_url(url) == normal
    assert relay_url(normal) == normal


@pytest.mark.parametrize(
    "url",
    [
        "ws://alice:hunter2@h",
        "ws://alice:hunter2@h x",
        "http://alice:hunter2@h",
        "alice:hunter2@h",
        "ws://alice:hunter2@" + "h" * 3000,
    ],
)
def test_user_information_is_never_echoed(url: str) -> None:
    with pytest.raises(RelayError) as caught:
        relay_url(url)
    assert "hunter2" not in str(caught.value)
    assert "hunter2" not in (caught.value.url or "")


def _check_accepted(text: str) -> None:
    """``text`` is accepted as a dialable URL or refused with RelayError, nothing else."""
    try:
        url = relay_url(text)
    except RelayError:
        return  # the messages themselves: test_undialable_urls_raise_a_precise_relay_error
    parts = urlsplit(url)  # raises nothing for an accepted URL
    assert parts.scheme in ("ws", "wss")
    assert parts.hostname
    assert parts.port is None or 1 <= parts.port <= 65535
    assert (parts.username, parts.password, parts.fragment) == (None, None, "")
    assert url.isascii()
    assert not any(c.isspace() for c in url)
    assert relay_url(url) == url
    # What the dialler does with it: websockets' own parser, and the resolver's IDNA step.
    ws = parse_uri(url)
    assert ws.port == (parts.port or (443 if ws.secure else 80))
    ws.host.encode("idna")


AUTHORITY = st.one_of(
    st.text(alphabet=URL_CHARS + " é\t", max_size=30),
    st.sampled_from(["127.0.0.1", "localhost", "[::1]", "[::1", "a..b", "h.", "[v1.x]"]),
    st.text(alphabet="abc-_.", min_size=1, max_size=70),
)
PORT = st.one_of(
    st.none(),
    st.integers(-3, 70_000).map(str),
    st.text(alphabet="0123456789+- ٣", max_size=7),
)
URL_LIKE = st.builds(
    lambda scheme, host, port, rest: scheme + host + ("" if port is None else ":" + port) + rest,
    st.sampled_from(["ws://", "ws://", "wss://", "WS://", "wSs://", "http://", "ws:/", ""]),
    AUTHORITY,
    PORT,
    st.text(alphabet=URL_CHARS + " \x00é", max_size=20),
)


@settings(max_examples=1000)
@given(st.one_of(URL_LIKE, st.text(max_size=80)))
def test_any_text_is_a_dialable_url_or_a_relay_error(text: str) -> None:
    _check_accepted(text)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


CLOSED_PORT = free_port()
LOCAL_URLS = st.builds(
    lambda scheme, host, path: f"{scheme}://{host}:{CLOSED_PORT}{path}",
    st.sampled_from(["ws", "wss", "WS", "Wss"]),
    st.sampled_from(["127.0.0.1", "localhost", "LocalHost", "127.0.0.1.", "127.1", "[::1]"]),
    st.text(alphabet=URL_CHARS.replace("#", "") + " ", max_size=24).map(lambda p: "/" + p),
)


async def _dial(url: str) -> None:
    # Leaving the pool raises if a connection task failed: that is the crash looked for.
    async with RelayPool(relays=[url], timeouts=FAST) as pool:
        async with pool.subscribe({"kinds": [1]}) as sub, asyncio.timeout(10):
            await sub.wait_stored()  # the relay is unreachable: the attempt has failed
        assert sub.relays == {url: "unavailable"}
        event = sign_event(Keys.generate(), kind=1, content="x")
        result = await pool.publish(event, timeout=0.05)
        assert result.outcomes[url].status in ("not_connected", "timeout")


@settings(max_examples=40)
@given(LOCAL_URLS)
def test_an_accepted_url_fails_to_connect_without_crashing_the_pool(text: str) -> None:
    try:
        url = relay_url(text)
    except RelayError:
        return  # refused up front (a space in the path, a bad %): nothing is dialled
    asyncio.run(_dial(url))


@pytest.mark.parametrize(("url", "message"), BAD[:12])
async def test_the_pool_refuses_undialable_urls_and_keeps_running(
    our_relay: str, url: str, message: str
) -> None:
    with pytest.raises(RelayError, match=message):
        RelayPool(relays=[our_relay, url])
    keys = Keys.generate()
    async with RelayPool(relays=[our_relay], timeouts=FAST) as pool:
        with pytest.raises(RelayError, match=message):
            await pool.add_relay(url)
        with pytest.raises(RelayError, match=message):
            await pool.publish(sign_event(keys, kind=1, content="x"), relays=[url])
        with pytest.raises(RelayError, match=message):
            pool.subscribe({"kinds": [1]}, relays=[url])
        with pytest.raises(RelayError, match=message):
            await pool.remove_relay(url)
        assert pool.relays == (our_relay,)
        result = await pool.publish(sign_event(keys, kind=1, content="still here"))
        assert result.outcomes[our_relay].status == "accepted"
