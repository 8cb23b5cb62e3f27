"""Cashu blind signatures (NUT-00 BDHKE), keyset ids (NUT-02) and DLEQ checks (NUT-12).

Pure: bytes and values in, values out; randomness is an argument with a real default. Points
and scalars are coincurve objects; the wire carries them as hex (33-byte compressed points).

The scheme (NUT-00): the mint's key for an amount is ``K = kG``. The wallet maps its secret
``x`` to a point ``Y = hash_to_curve(x)``, sends ``B_ = Y + rG``, gets back ``C_ = kB_`` and
unblinds ``C = C_ - rK = kY``. ``(x, C)`` is the proof the mint later recognises, without
having seen ``x`` or ``C`` before.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Mapping

from coincurve import PrivateKey, PublicKey

from dvmkit.payments.cashu_errors import CashuError

#: NUT-00 domain separator of hash_to_curve.
DOMAIN_SEPARATOR = b"Secp256k1_HashToCurve_Cashu_"
#: Order of the secp256k1 group.
CURVE_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_MAX_COUNTER = 1 << 16


def hash_to_curve(message: bytes) -> PublicKey:
    """Map ``message`` to a curve point (NUT-00): the first ``02 || sha256(h || counter)``
    on the curve, where ``h = sha256(DOMAIN_SEPARATOR || message)`` and ``counter`` is a
    little-endian uint32 from 0.

    Raises:
        CashuError: no point within 2^16 tries (probability ~2^-65536; never in practice).
    """
    digest = hashlib.sha256(DOMAIN_SEPARATOR + message).digest()
    for counter in range(_MAX_COUNTER):
        candidate = hashlib.sha256(digest + counter.to_bytes(4, "little")).digest()
        try:
            return PublicKey(b"\x02" + candidate)
        except ValueError:
            continue  # not an x coordinate on the curve: about half of them are not
    raise CashuError("hash_to_curve found no point")  # pragma: no cover


def random_scalar(randbytes: Callable[[int], bytes] = secrets.token_bytes) -> PrivateKey:
    """A uniformly random non-zero scalar (a blinding factor)."""
    while True:
        value = int.from_bytes(randbytes(32), "big")
        if 0 < value < CURVE_ORDER:
            return PrivateKey(value.to_bytes(32, "big"))


def blind(secret: str, r: PrivateKey) -> PublicKey:
    """``B_ = hash_to_curve(secret) + rG`` (NUT-00 step 1; the secret as UTF-8 bytes)."""
    return PublicKey.combine_keys([hash_to_curve(secret.encode()), r.public_key])


def sign_blinded(k: PrivateKey, blinded: PublicKey) -> PublicKey:
    """The mint's step: ``C_ = k B_``. Wallets never call this; tests check vectors with it."""
    return blinded.multiply(k.secret)


def unblind(blind_signature: PublicKey, r: PrivateKey, mint_key: PublicKey) -> PublicKey:
    """``C = C_ - rK`` (NUT-00 step 3)."""
    minus_r = (CURVE_ORDER - r.to_int()).to_bytes(32, "big")
    return PublicKey.combine_keys([blind_signature, mint_key.multiply(minus_r)])


def verify_proof(k: PrivateKey, secret: str, signature: PublicKey) -> bool:
    """The mint's check: ``C == k hash_to_curve(secret)``. For tests with known keys."""
    return signature.format() == hash_to_curve(secret.encode()).multiply(k.secret).format()


def _hash_e(*points: PublicKey) -> bytes:
    # NUT-12: sha256 over the concatenated hex of the uncompressed points, as UTF-8 text.
    return hashlib.sha256(
        "".join(p.format(compressed=False).hex() for p in points).encode()
    ).digest()


def verify_dleq(
    *, mint_key: PublicKey, blinded: PublicKey, blind_signature: PublicKey, e: bytes, s: bytes
) -> bool:
    """Check the mint's NUT-12 proof that ``C_`` was made with the same ``k`` as ``K``.

    ``R1 = sG - eK``, ``R2 = sB_ - eC_``, valid when ``e == hash(R1, R2, K, C_)``.
    """
    if len(e) != 32 or len(s) != 32:
        return False
    e_int, s_int = int.from_bytes(e, "big"), int.from_bytes(s, "big")
    if not (0 < e_int < CURVE_ORDER and 0 < s_int < CURVE_ORDER):
        return False
    minus_e = (CURVE_ORDER - e_int).to_bytes(32, "big")
    try:
        r1 = PublicKey.combine_keys([PrivateKey(s).public_key, mint_key.multiply(minus_e)])
        r2 = PublicKey.combine_keys([blinded.multiply(s), blind_signature.multiply(minus_e)])
    except ValueError:  # a sum at infinity: not a valid proof
        return False
    return _hash_e(r1, r2, mint_key, blind_signature) == e


def derive_keyset_id_v1(keys: Mapping[int, PublicKey]) -> str:
    """Version ``00`` id (NUT-02): ``00`` + the first 7 bytes of sha256 of the compressed keys
    concatenated in ascending amount order."""
    concatenated = b"".join(keys[amount].format() for amount in sorted(keys))
    return "00" + hashlib.sha256(concatenated).hexdigest()[:14]


def derive_keyset_id_v2(
    keys: Mapping[int, PublicKey],
    *,
    unit: str,
    input_fee_ppk: int = 0,
    final_expiry: int | None = None,
    separator: str = ",",
) -> str:
    """Version ``01`` id (NUT-02): ``01`` + sha256 of ``amount:key_hex`` joined by ``,`` in
    ascending amount order, then ``|unit:<unit>``, ``|input_fee_ppk:<n>`` when n > 0 and
    ``|final_expiry:<t>`` when there is one.

    ``separator=""`` gives the earlier revision's ids (the published NUT-02 v2 vectors were
    made with no separator between keys; nutshell 0.20, cashu-ts and cdk write ``,``).
    """
    data = separator.join(f"{amount}:{keys[amount].format().hex()}" for amount in sorted(keys))
    data += f"|unit:{unit.lower()}"
    if input_fee_ppk > 0:
        data += f"|input_fee_ppk:{input_fee_ppk}"
    if final_expiry is not None:
        data += f"|final_expiry:{final_expiry}"
    return "01" + hashlib.sha256(data.encode()).hexdigest()


def keyset_id_matches(
    keyset_id: str,
    keys: Mapping[int, PublicKey],
    *,
    unit: str,
    input_fee_ppk: int = 0,
    final_expiry: int | None = None,
) -> bool:
    """Whether ``keyset_id`` is the id its keys (and, for v2, its unit, fee, expiry) derive."""
    if keyset_id.startswith("00"):
        return keyset_id == derive_keyset_id_v1(keys)
    if keyset_id.startswith("01"):
        return any(
            keyset_id
            == derive_keyset_id_v2(
                keys,
                unit=unit,
                input_fee_ppk=input_fee_ppk,
                final_expiry=final_expiry,
                separator=separator,
            )
            for separator in (",", "")
        )
    return False


def split_amount(amount: int) -> list[int]:
    """``amount`` as distinct powers of two, ascending (the denominations a mint signs)."""
    if amount < 0:
        raise ValueError("a negative amount cannot be split")
    return [1 << bit for bit in range(amount.bit_length()) if amount >> bit & 1]
