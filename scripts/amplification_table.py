"""Measure the reflection factor of ikeqcd's unprotected replies (SECURITY.md, "Reflection").

For each token profile and secret-generation count, build real requests of the sizes that
matter, answer them with the real ``TokenResponder`` and print the reply size, the number of
tokens carried and the factor on the wire (IPv4 + UDP headers, 28 octets, on both sides: the
tighter case; IPv6 only lowers it). Run: ``.venv/bin/python scripts/amplification_table.py``.
"""

from __future__ import annotations

from ikeqcd import MakerPolicy, TokenMaker, TokenResponder, wire

REQUESTS = [
    (wire.MIN_SK_BODY, "smallest accepted (AES-GCM-8: IV 8, Pad Length 1, ICV 8)"),
    (wire.LIVENESS_SK_BODY, "empty INFORMATIONAL, AES-GCM-16 (`build_request` default)"),
    (44, "empty INFORMATIONAL, AES-CBC + HMAC-SHA1-96"),
    (160, "a request with payloads"),
]
PROFILES = [("hmac-sha256", None), ("hmac-sha512", None), ("hmac-sha1", None)]
OVERHEAD = 20 + 8


def cell(m: TokenMaker, body: int, nat_t: bool) -> str:
    r = TokenResponder(m, policy=MakerPolicy.unlimited())
    q = wire.build_request(1, 2, sk_body=bytes(body), nat_t=nat_t)
    reply = r.respond(q)
    assert reply is not None
    n = len(wire.parse_qcd_reply(reply, nat_t=nat_t).tokens)
    factor = (len(reply) + OVERHEAD) / (len(q) + OVERHEAD)
    assert factor <= 2.0
    return f"{len(reply)} / {n} / {factor:.2f}x"


def table(nat_t: bool = False) -> str:
    sizes = [len(wire.build_request(1, 2, sk_body=bytes(b), nat_t=nat_t)) for b, _ in REQUESTS]
    head = " | ".join(f"{n}-octet request: {what}" for n, (_, what) in zip(sizes, REQUESTS))
    lines = [f"| profile | generations | {head} |", "|---|---|" + "---|" * len(REQUESTS)]
    for alg, tl in PROFILES:
        for gens in (1, 2, 3, 4):
            m = TokenMaker([bytes([g + 1]) * 32 for g in range(gens)], algorithm=alg, token_len=tl)
            cells = " | ".join(cell(m, b, nat_t) for b, _ in REQUESTS)
            lines.append(f"| {alg}/{m.token_len} | {gens} | {cells} |")
    return "\n".join(lines)


def main() -> None:
    print("Each cell: reply octets / tokens carried / factor on the wire (IPv4 + UDP headers on")
    print("both sides), UDP/500. On UDP/4500 both sides carry 4 more octets (factors a little lower).")
    print()
    print(table())
    short = TokenResponder(TokenMaker([b"\x01" * 32]), policy=MakerPolicy.unlimited())
    assert short.respond(wire.build_request(1, 2, sk_body=b"")) is None
    print()
    print(f"A 32-octet request with an empty SK body (and any SK body under {wire.MIN_SK_BODY}")
    print("octets) draws no reply: Reason.UNPROTECTED.")


if __name__ == "__main__":
    main()
