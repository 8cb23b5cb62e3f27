"""Private jobs end to end: gift-wrapped requests run, and are answered wrapped back only.

DESIGN.md §4.2 (Encryption), SPECS.md §3.4 (ContextVM's simplified wrap) and §4.3 (NIP-59).
The DVM runs on real relays (ours, and nostr-sdk's LocalRelay); the customer wraps its
requests with dvmkit and opens its answers with dvmkit (see :mod:`.private`); nostr-sdk as
the customer is in ``test_private_interop.py``, damaged wraps in ``test_private_hostile.py``.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import orjson
import pytest

from dvmkit.errors import DecryptionError, GiftWrapError
from dvmkit.nostr import giftwrap, nip44
from dvmkit.nostr.event import Event, sign_event
from dvmkit.nostr.keys import Keys
from dvmkit.protocol.envelope import Envelope, open_wrap, wrap_request
from dvmkit.protocol.job import MODERN_KIND, ErrorCode
from dvmkit.relay.pool import RelayPool
from dvmkit.relay.server import Relay
from dvmkit.store import JobState, SQLiteJobStore

from .conftest import WAIT, error_of, make_dvm
from .private import ENVELOPES, Answer, PrivateCustomer, private_customer, recording_dvm


def assert_wrapped_by_dvm(
    answer: Answer, request: Event, customer: PrivateCustomer, envelope: Envelope
) -> None:
    """``answer`` came to ``customer`` alone, wrapped as ``envelope`` says, from the DVM."""
    assert answer.wrap is not None, "an answer to a private job came in the clear"
    assert (answer.form, answer.wrap.kind) == (envelope.form, envelope.kind)
    assert list(answer.wrap.tags) == [("p", customer.pubkey)]
    assert answer.wrap.pubkey != customer.dvm  # a one-time key
    inner = answer.event
    assert inner.pubkey == customer.dvm
    if envelope.form == "simple":
        assert inner.verify()  # the inner answer is signed by the DVM
    else:
        assert answer.seal is not None  # the rumor is sealed by the DVM
        assert (answer.seal.pubkey, answer.seal.kind) == (customer.dvm, 13)
        assert answer.seal.verify()
    assert inner.kind == MODERN_KIND
    assert inner.tag_values("e") == [request.id]
    assert inner.tag_values("p") == [customer.pubkey]


# -- the modern private job, every form and wrap kind ----------------------------------------


@pytest.mark.parametrize("envelope", ENVELOPES, ids=str)
async def test_a_wrapped_job_runs_and_every_answer_comes_back_wrapped_the_same_way(
    relay_url: str, envelope: Envelope
) -> None:
    dvm, calls = recording_dvm(relay_url)
    async with dvm.running(), private_customer(relay_url, dvm.public_key) as customer:
        good = await customer.ask("secret words", tags=[["param", "times", "2"]], envelope=envelope)
        bad = await customer.ask("secret too", tags=[["param", "times", "many"]], envelope=envelope)
        result = await customer.final(good.id)
        refusal = await customer.final(bad.id)

        assert result.event.content == "SECRET WORDS SECRET WORDS"
        assert result.event.tag_value("status") == "success"
        statuses = [a.status for a in customer.answers(good.id)]
        assert statuses == ["processing", "partial", "success"]
        processing, partial, _ = customer.answers(good.id)
        assert processing.event.tag("status") == ("status", "processing", "warming up")
        assert partial.event.content == "sdrow terces"
        code, message = error_of(refusal.event)
        assert code == ErrorCode.INVALID_PARAMETER
        assert "times" in message
        for answer in customer.answers(good.id):
            assert_wrapped_by_dvm(answer, good, customer, envelope)
        assert_wrapped_by_dvm(refusal, bad, customer, envelope)
        assert calls == [good.id]

        # Nothing about either job was said in the clear, and no wrap failed to open. The
        # observer reads the same subscription as the answers: by the time the last answer
        # was opened, anything the DVM published before it had been seen too.
        assert customer.in_the_clear(about=[good.id, bad.id], to=[customer.pubkey]) == []
        assert not [e for e in customer.seen if "secret" in e.content.lower()]
        assert customer.unopened == []


async def test_one_inner_request_rewrapped_a_thousand_times_runs_once(our_relay_url: str) -> None:
    """Fresh wraps of one signed request: the job's identity is the inner id (DESIGN.md §4.3)."""
    store = SQLiteJobStore()
    dvm, calls = recording_dvm(our_relay_url, store=store)
    async with dvm.running(), private_customer(our_relay_url, dvm.public_key) as customer:
        request = customer.sign(content="once", tags=[["p", dvm.public_key]])
        wraps = [wrap_request(request, customer.keys, dvm.public_key) for _ in range(1000)]
        assert len({w.id for w in wraps}) == 1000
        for wrap in wraps:
            assert (await customer.pool.publish(wrap, timeout=WAIT)).ok
        # Another job, wrapped after the thousand on the same connection: the DVM reads its
        # wraps in order, so when this one is answered every copy had been read.
        later = await customer.ask("later")
        await customer.final(later.id)
        first = await customer.final(request.id)
        assert first.wrap is not None
        # One more fresh wrap, now that the job is done: answered again from the store.
        result_wrap = first.wrap.id
        before = customer.deliveries[result_wrap]
        await customer.send(request)
        await customer.until(lambda: customer.deliveries[result_wrap] > before)
        # Every copy of a result that reached the customer is that one result, in that wrap.
        results = {
            (a.event.id, a.wrap.id)
            for a in customer.opened
            if a.wrap is not None and request.id in a.event.tag_values("e")
            if a.status == "success"
        }
        assert results == {(first.event.id, result_wrap)}
        record = await store.get(request.id)
    assert calls == [request.id, later.id]
    assert record is not None
    assert (record.attempts, record.result_event_id) == (1, first.event.id)
    assert record.envelope == "simple:21059"


# -- security: forged and misaddressed wraps ---------------------------------------------------


def _retagged(wrap: Event, wrapper: Keys, recipient: str) -> Event:
    """``wrap`` with its ``p`` tag changed, signed again by its one-time key."""
    return sign_event(
        wrapper,
        kind=wrap.kind,
        content=wrap.content,
        tags=[["p", recipient]],
        created_at=wrap.created_at,
    )


async def test_forged_and_misaddressed_wraps_are_never_run_nor_answered(relay_url: str) -> None:
    dvm, calls = recording_dvm(relay_url)
    victim, attacker, other = Keys.generate(), Keys.generate(), Keys.generate()
    async with dvm.running(), private_customer(relay_url, dvm.public_key) as customer:
        me = customer.keys

        # 1. The simplified form: an inner event claiming the victim, with a bad signature.
        claimed = sign_event(
            victim, kind=MODERN_KIND, content="forged", tags=[["p", dvm.public_key]]
        )
        bad_sig = dataclasses.replace(claimed, sig=sign_event(attacker, kind=1).sig)
        forged_simple = giftwrap.wrap_signed(bad_sig, dvm.public_key)

        # 2. NIP-59: the attacker seals a rumor that claims the victim wrote it (NIP-17).
        rumor = giftwrap.make_rumor(
            victim.public_key, kind=MODERN_KIND, content="forged", tags=[["p", dvm.public_key]]
        )
        sealed = nip44.encrypt(
            rumor.to_json(), nip44.get_conversation_key(attacker, dvm.public_key)
        )
        forged_seal = giftwrap.wrap(sign_event(attacker, kind=13, content=sealed), dvm.public_key)

        # 3. Encrypted to the DVM, addressed (p) to another key: no relay routes it to the
        # DVM, so it is also handed to the engine directly.
        aimed = customer.sign(content="elsewhere", tags=[["p", dvm.public_key]])
        wrapper = Keys.generate()
        to_dvm = giftwrap.wrap_signed(aimed, dvm.public_key, wrapper=wrapper)
        misaddressed = _retagged(to_dvm, wrapper, other.public_key)

        # 4. Addressed (p) to the DVM, encrypted to another key.
        stray = customer.sign(content="not for you", tags=[["p", dvm.public_key]])
        wrapper = Keys.generate()
        to_other = giftwrap.wrap_signed(stray, other.public_key, wrapper=wrapper)
        mis_encrypted = _retagged(to_other, wrapper, dvm.public_key)

        # Each fails for its own reason (not for some accident of how it was built).
        refusals = {
            forged_simple: (GiftWrapError, "bad signature"),
            forged_seal: (GiftWrapError, "claimed author is forged"),
            misaddressed: (GiftWrapError, "not addressed"),
            mis_encrypted: (DecryptionError, "MAC"),
        }
        for wrap, (error, reason) in refusals.items():
            with pytest.raises(error, match=reason):
                open_wrap(wrap, dvm.keys)
            assert (await customer.pool.publish(wrap, timeout=WAIT)).ok
        assert dvm._engine is not None
        dvm._engine.on_event(misaddressed)

        good = await customer.ask("after all that")
        result = await customer.final(good.id)
        assert result.event.content == "AFTER ALL THAT"

        bad_ids = [claimed.id, rumor.id, aimed.id, stray.id]
        assert calls == [good.id]
        # The three the relay routed to the DVM, and the one handed to it: all refused.
        assert dvm.stats().refused_wraps == 4
        assert customer.in_the_clear(about=bad_ids, to=[me.public_key, victim.public_key]) == []
        for request_id in bad_ids:
            assert customer.answers(request_id) == []
        # Every event addressed to the customer or the victim is a wrap about the good job.
        addressed = [
            e for e in customer.seen if {me.public_key, victim.public_key} & set(e.tag_values("p"))
        ]
        answered = {a.wrap.id for a in customer.answers(good.id) if a.wrap is not None}
        assert addressed
        assert {e.id for e in addressed} == answered
        assert customer.unopened == []


# -- encryption policies -------------------------------------------------------------------------


async def test_required_refuses_plain_targeted_ignores_plain_open_and_runs_private(
    relay_url: str,
) -> None:
    dvm, calls = recording_dvm(relay_url, encryption="required")
    async with dvm.running(), private_customer(relay_url, dvm.public_key) as customer:
        open_request = customer.sign(content="open", tags=[["t", "text"], ["category", "text"]])
        await customer.send(open_request, envelope=None)
        targeted = await customer.ask("targeted", envelope=None)
        refusal = await customer.final(targeted.id)
        # The DVM reads its requests in order: the open one was read, and left to others.
        assert customer.answers(open_request.id) == []
        assert dvm.stats().ignored == 1

        private = await customer.ask("private")
        result = await customer.final(private.id)
        # NIP-90 encrypted params make a legacy job private too.
        params = orjson.dumps([["i", "legacy", "text"]]).decode()
        secret = nip44.encrypt_to(customer.keys, dvm.public_key, params)
        legacy = await customer.ask(
            kind=5050, content=secret, tags=[["encrypted", "nip44"]], envelope=None
        )
        legacy_result = await customer.final(legacy.id)

    assert refusal.wrap is None  # a plain request is answered in the clear
    code, message = error_of(refusal.event)
    assert code == ErrorCode.POLICY_VIOLATION
    assert "private jobs only" in message
    assert result.wrap is not None
    assert result.event.content == "PRIVATE"
    assert legacy_result.event.kind == 6050
    assert nip44.decrypt_from(customer.keys, dvm.public_key, legacy_result.event.content) == (
        "LEGACY"
    )
    assert calls == [private.id, legacy.id]


async def test_off_leaves_wraps_unread(relay_url: str) -> None:
    dvm, calls = recording_dvm(relay_url, encryption="off")
    async with dvm.running(), private_customer(relay_url, dvm.public_key) as customer:
        private = customer.sign(content="private", tags=[["p", dvm.public_key]])
        wrap = await customer.send(private)
        plain = await customer.ask("plain", envelope=None)
        assert (await customer.final(plain.id)).event.content == "PLAIN"
        assert customer.deliveries[wrap.id] == 1  # the wrap was on the relay
        # Not subscribed, and not read either when handed over.
        assert dvm._engine is not None
        ignored = dvm.stats().ignored
        dvm._engine.on_event(wrap)
        assert dvm.stats().ignored == ignored + 1
        assert customer.answers(private.id) == []
    assert calls == [plain.id]


# -- NIP-42: a relay that serves wraps only to their authenticated recipient ---------------------


async def test_an_auth_relay_serves_the_wraps_only_to_their_recipients() -> None:
    third = Keys.generate()
    async with Relay(port=0, auth=True) as relay:
        dvm, calls = recording_dvm(relay.url)
        wraps = {"kinds": [1059, 21059]}
        async with (
            dvm.running(),
            private_customer(relay.url, dvm.public_key) as customer,
            RelayPool(relays=[relay.url], signer=third) as pool,
            pool.subscribe(wraps) as snooper,
        ):
            async with asyncio.timeout(WAIT):
                await snooper.wait_stored()
            ephemeral = await customer.ask("ephemeral")
            stored = await customer.ask("stored", envelope=Envelope("nip59", 1059))
            assert (await customer.final(ephemeral.id)).event.content == "EPHEMERAL"
            assert (await customer.final(stored.id)).event.content == "STORED"

            # A wrap for the third key, sent after everything else: once it arrives, every
            # earlier wrap would have reached the third key's connection before it.
            mine = giftwrap.wrap_signed(
                sign_event(Keys.generate(), kind=MODERN_KIND, content="for third"),
                third.public_key,
                kind=1059,
            )
            assert (await customer.pool.publish(mine, timeout=WAIT)).ok
            got: list[Event] = []
            async with asyncio.timeout(WAIT):
                async for event in snooper:
                    got.append(event)
                    if event.id == mine.id:
                        break
            assert [e.id for e in got] == [mine.id]
            fetched = await pool.fetch(wraps, timeout=WAIT)
            assert [e.id for e in fetched] == [mine.id]
            assert pool.stats().relays[relay.url].authenticated
            assert customer.pool.stats().relays[relay.url].authenticated
    assert calls == [ephemeral.id, stored.id]


# -- chaining and durability -----------------------------------------------------------------------


async def test_a_private_jobs_result_cannot_be_chained_into_a_plain_job(relay_url: str) -> None:
    dvm, calls = recording_dvm(relay_url)
    async with dvm.running(), private_customer(relay_url, dvm.public_key) as customer:
        wrapped = await customer.ask("classified")
        assert (await customer.final(wrapped.id)).event.content == "CLASSIFIED"
        # A legacy job with encrypted params is private too.
        params = orjson.dumps([["i", "sealed", "text"]]).decode()
        secret = nip44.encrypt_to(customer.keys, dvm.public_key, params)
        encrypted = await customer.ask(
            kind=5050, content=secret, tags=[["encrypted", "nip44"]], envelope=None
        )
        await customer.final(encrypted.id)
        refusals = []
        for private in (wrapped, encrypted):
            chained = await customer.ask(envelope=None, tags=[["i", private.id, "job"]])
            refusals.append((await customer.final(chained.id)).event)
    for refusal in refusals:
        assert refusal.tag_value("status") == "error"
        code, message = error_of(refusal)
        assert code == ErrorCode.BAD_REQUEST
        assert "private" in message
        assert "CLASSIFIED" not in refusal.content + message
        assert "SEALED" not in refusal.content + message
    # The chained jobs' inputs failed to resolve: the handler never saw them.
    assert calls == [wrapped.id, encrypted.id]


@pytest.mark.parametrize("envelope", [Envelope("simple", 21059), Envelope("nip59", 21059)], ids=str)
async def test_a_private_job_survives_a_restart_and_is_resent_with_the_same_wrap(
    our_relay_url: str, tmp_path: Path, envelope: Envelope
) -> None:
    keys, db = Keys.generate(), tmp_path / "jobs.sqlite3"
    entered = asyncio.Event()

    async with private_customer(our_relay_url, keys.public_key) as customer:
        # First life: the job is stored and running when the DVM stops.
        first = make_dvm(our_relay_url, keys=keys, store_path=db)

        @first.job
        async def stuck(input: str) -> str:
            entered.set()
            await asyncio.Event().wait()
            raise AssertionError("unreachable")

        async with first.running():
            request = await customer.ask("durable", envelope=envelope)
            async with asyncio.timeout(WAIT):
                await entered.wait()
        async with SQLiteJobStore(db) as store:
            record = await store.get(request.id)
        assert record is not None
        assert (record.state, record.envelope) == (JobState.PROCESSING, str(envelope))
        assert customer.answers(request.id) == []

        # Second life: the job resumes, and its answer goes back in the envelope it came in.
        second, calls = recording_dvm(our_relay_url, keys=keys, store_path=db)
        async with second.running():
            result = await customer.final(request.id)
            assert result.event.content == "DURABLE"
            assert result.wrap is not None
            assert (result.form, result.wrap.kind) == (envelope.form, envelope.kind)
            # The customer sends the request again in a fresh wrap: the stored answer is
            # re-sent, the very same wrap.
            wrap_id = result.wrap.id
            before = customer.deliveries[wrap_id]
            await customer.send(request, envelope)
            await customer.until(lambda: customer.deliveries[wrap_id] > before)
        assert calls == [request.id]

    async with SQLiteJobStore(db) as store:
        record = await store.get(request.id)
        outbox = await store.job_events(request.id)
    assert record is not None
    assert (record.state, record.envelope) == (JobState.SUCCESS, str(envelope))
    assert record.result_event_id == result.event.id  # the inner id, not the wrap's
    assert wrap_id in [item.event_id for item in outbox]
