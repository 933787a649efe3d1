"""Write tests/vectors/tokens.json: golden QCD tokens computed with Python's hmac (OpenSSL),
independently of ikeqcd, for every algorithm, several lengths, generations and §5.2 addresses.
token = HMAC-H(secret, SPI-I(8, big-endian) || SPI-R(8) [|| address(4|16)])[:token_len]."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
from pathlib import Path

SECRETS = [bytes(range(32)), bytes(range(100, 132)), b"\x5a" * 64, b"generation-three-secret!"]
CASES = [
    ("hmac-sha256", "sha256", None, 32),
    ("hmac-sha256", "sha256", 16, 16),
    ("hmac-sha256", "sha256", 24, 24),
    ("hmac-sha512", "sha512", None, 64),
    ("hmac-sha512", "sha512", 40, 40),
    ("hmac-sha1", "sha1", None, 16),
    ("hmac-sha1", "sha1", 20, 20),
]
SPIS = [
    (0x0000000000000001, 0x0000000000000002),
    (0x0123456789ABCDEF, 0xFEDCBA9876543210),
    (0xFFFFFFFFFFFFFFFF, 0x0000000000000000),
    (0x8000000000000000, 0x7FFFFFFFFFFFFFFF),
]
ADDRESSES = [None, "192.0.2.7", "2001:db8::1"]


def main() -> None:
    out = []
    for alg, hname, token_len, eff_len in CASES:
        for gen in range(len(SECRETS)):
            for spi_i, spi_r in SPIS:
                for addr in ADDRESSES:
                    msg = spi_i.to_bytes(8, "big") + spi_r.to_bytes(8, "big")
                    if addr is not None:
                        msg += ipaddress.ip_address(addr).packed
                    tok = hmac.new(SECRETS[gen], msg, getattr(hashlib, hname)).digest()[:eff_len]
                    out.append(
                        {
                            "algorithm": alg,
                            "token_len": token_len,
                            "generation": gen,
                            "spi_i": f"{spi_i:016x}",
                            "spi_r": f"{spi_r:016x}",
                            "address": addr,
                            "token": tok.hex(),
                        }
                    )
    doc = {
        "source": "scripts/gen_token_vectors.py (Python hmac / OpenSSL, independent of ikeqcd)",
        "secrets": [s.hex() for s in SECRETS],
        "vectors": out,
    }
    path = Path(__file__).resolve().parent.parent / "tests" / "vectors" / "tokens.json"
    path.write_text(json.dumps(doc, indent=0) + "\n")
    print(f"wrote {len(out)} vectors to {path}")


if __name__ == "__main__":
    main()
