"""Write the fuzzers' seed corpus: a few real messages built with ikeqcd's own codec.

Each file is named ``seed-*`` (the only corpus files git keeps, see .gitignore). The Rust
targets take a mode octet first (framing: 0 auto, 1 UDP/500, 2 UDP/4500; bit 7 for the
responder = the SA is live), the responder a decision octet second, then the datagram.
``scripts/fuzz_python.py`` uses the same datagrams. Run: ``.venv/bin/python scripts/fuzz_seeds.py [DIR]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ikeqcd import TokenMaker, wire

ROOT = Path(__file__).resolve().parent.parent / "fuzz" / "corpus"


def datagrams() -> dict[str, bytes]:
    m = TokenMaker([b"\x11" * 32, b"\x22" * 32])
    spi_i, spi_r = 0x1122334455667788, 0x99AABBCCDDEEFF00
    req = wire.build_request(spi_i, spi_r, message_id=7, sk_body=b"\x00" * 48)
    req_nat = wire.build_request(spi_i, spi_r, message_id=7, sk_body=b"\x00" * 48, nat_t=True)
    toks = m.all_tokens(spi_i, spi_r)
    return {
        "request": req,
        "request-nat": req_nat,
        "request-response": wire.build_request(spi_i, spi_r, response=True, sk_body=b"x" * 20),
        "request-init": wire.build_request(spi_i, 0, exchange=wire.EXCHANGE_IKE_SA_INIT),
        "qcd-reply": wire.build_qcd_reply(req, toks),
        "qcd-reply-nat": wire.build_qcd_reply(req_nat, toks, nat_t=True),
        "bare-reply": wire.build_invalid_ike_spi_reply(req),
        "invalid-spi": wire.build_invalid_spi_message(0xDEADBEEF, toks[:1], spi_i=spi_i),
        "keepalive": b"\xff",
    }


def main(root: Path = ROOT) -> None:
    seeds: dict[str, dict[str, bytes]] = {
        "parse_message": {},
        "parse_qcd_reply": {},
        "responder_classify_build": {},
        "table_ops": {},
    }
    for name, d in datagrams().items():
        mode = 2 if name.endswith("-nat") else 0
        seeds["parse_message"][name] = bytes([mode]) + d
        seeds["parse_qcd_reply"][name] = bytes([mode]) + d
        seeds["responder_classify_build"][name] = bytes([mode, 0]) + d
        seeds["responder_classify_build"][name + "-live"] = bytes([mode | 0x80, 10]) + d
    # table_ops: history, then operations (see fuzz/fuzz_targets/table_ops.rs).
    seeds["table_ops"]["insert-check"] = bytes([1, 0x10, 9, 1, 18, 0x13, 9, 1, 1, 18])
    seeds["table_ops"]["batch"] = bytes([3, 0x24, 3, 2, 16, 1, 2, 3, 0x35, 3, 2, 16, 1, 2, 3])
    seeds["table_ops"]["touch-due"] = bytes([0, 0x00, 5, 1, 20, 0x27, 5, 0x58, 5, 0x99, 3])
    for target, files in seeds.items():
        d = root / target
        d.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            (d / f"seed-{name}").write_bytes(data)
        print(f"{target}: {len(files)} seeds")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT)
