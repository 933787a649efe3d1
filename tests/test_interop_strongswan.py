"""Interop with a real IKEv2 daemon: strongSwan's charon.

Two charon instances, each in its own network namespace (joined by a veth pair), bring up an
IKEv2 IKE SA with a PSK and DPD every 2 s (childless, RFC 6023: this kernel may lack ESP, and
an IKE SA is all DPD needs). The responder's charon is killed with SIGKILL (a crash without a
reboot), and the kernel keeps IPsec policies for the pair (a transport-mode host-to-host ESP
policy, as its Child SA would have left; added by hand when charon left none). Then
``ikeqcd serve`` takes over the responder's address on UDP/500 and UDP/4500 (with MOBIKE,
the default, the SA moved to 4500 in IKE_AUTH; the ``udp500`` case switches it off):

1. with ``--no-xfrm-bypass`` it receives nothing: the kernel's policy check drops the
   initiator's plaintext DPD requests before the socket (tcpdump on the veth sees them);
2. by default (per-socket bypass) it answers them: every reply on the wire is
   N(INVALID_IKE_SPI) + N(QCD_TOKEN), decoded by ``ikeqcd decode`` and by Wireshark's tshark,
   and the token verifies under the serve secret for the SPI pair of the request (strongSwan
   does not know the token: it cannot be an echo).

The number of strongSwan requests answered and verified goes to the terminal summary.
Set IKEQCD_INTEROP_SAVE=DIR to keep the captures (tests/corpus/ was made that way).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from ikeqcd import SecretStore, wire

from tests import interop_netns as nn
from tests.interop_daemons import CHARON, Charon

pytestmark = pytest.mark.interop


@pytest.fixture
def pair(summary: Callable[[str], None]) -> Iterator[nn.NetnsPair]:
    why = nn.missing_prerequisite([CHARON, "swanctl", "tshark"])
    if why is not None:
        summary(f"skipped: {why}")
        pytest.skip(f"strongSwan interop: {why}")
    with nn.netns_pair("s") as p:
        yield p


@pytest.mark.parametrize("port", [4500, 500], ids=["mobike-udp4500", "udp500"])
def test_strongswan_dpd_after_crash_answered_with_qcd_token(
    pair: nn.NetnsPair, tmp_path: Path, summary: Callable[[str], None], port: int
) -> None:
    secret = tmp_path / "qcd.secret"
    SecretStore(secret).create()
    name = "strongswan" if port == 4500 else "strongswan-udp500"
    setup_pcap = tmp_path / f"{name}-setup.pcap"
    crash_pcap = tmp_path / f"{name}-crash.pcap"
    mobike = port == 4500
    with (
        Charon(pair.ns_i, tmp_path / "initiator", nn.ADDR_I, nn.ADDR_R, "initiator",
               "responder", mobike=mobike) as ini,
        Charon(pair.ns_r, tmp_path / "responder", nn.ADDR_R, nn.ADDR_I, "responder",
               "initiator", mobike=mobike) as res,
    ):  # fmt: skip
        ini.ready()
        res.ready()
        with nn.capture(pair, setup_pcap):
            out = ini.swanctl("--initiate", "--ike", "qcd", timeout=15)
            assert "initiate completed successfully" in out, out
            sas = ini.swanctl("--list-sas")
            assert "ESTABLISHED" in sas, sas
            # a DPD exchange while both daemons live (the corpus's INFORMATIONALs)
            nn.wait_for_response(setup_pcap, wire.EXCHANGE_INFORMATIONAL)
        result = nn.crash_and_serve(pair, secret, res.crash, crash_pcap, ini.log)
        assert result.ports == (port,), result
        nn.save(setup_pcap, crash_pcap)
    summary(nn.summary_line(f"{ini.version()} (survivor) after {res.version()} crashed", result))
