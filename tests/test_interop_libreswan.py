"""Interop with libreswan (pluto 4.x) as the peer, against strongSwan's charon, in network
namespaces (see test_interop_strongswan.py for the method).

- libreswan as the crashed gateway: strongSwan initiates (asking for a transport-mode Child
  SA, which libreswan 4.x needs in IKE_AUTH), the IKE SA comes up (without ESP in the kernel
  the Child SA fails and both keep the IKE SA), pluto is SIGKILLed with its kernel state left
  in place, and ``serve`` answers strongSwan's DPD retransmissions.
- libreswan as the survivor: libreswan initiates, strongSwan's charon is SIGKILLed, and
  ``serve`` must answer libreswan's liveness probes. libreswan 4.x sends them only on an
  established Child SA: where the Child SA could not be installed (a kernel without ESP),
  the test skips, quoting the log lines that show why and counting the probes that were
  not sent.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from ikeqcd import SecretStore, pcap, wire

from tests import interop_netns as nn
from tests.interop_daemons import CHARON, Charon, Pluto, kernel_esp, libreswan_missing

pytestmark = pytest.mark.interop


@pytest.fixture
def pair(summary: Callable[[str], None]) -> Iterator[nn.NetnsPair]:
    why = nn.missing_prerequisite([CHARON, "swanctl", "tshark"]) or libreswan_missing()
    if why is not None:
        summary(f"skipped: {why}")
        pytest.skip(f"libreswan interop: {why}")
    with nn.netns_pair("l") as p:
        yield p


def test_libreswan_crashed_gateway_answered_for_strongswan(
    pair: nn.NetnsPair, tmp_path: Path, summary: Callable[[str], None]
) -> None:
    secret = tmp_path / "qcd.secret"
    SecretStore(secret).create()
    setup_pcap = tmp_path / "libreswan-responder-setup.pcap"
    crash_pcap = tmp_path / "libreswan-responder-crash.pcap"
    with (
        Charon(pair.ns_i, tmp_path / "strongswan", nn.ADDR_I, nn.ADDR_R, "initiator",
               "responder", child=True) as ini,
        Pluto(pair.ns_r, tmp_path / "libreswan", nn.ADDR_R, nn.ADDR_I, "responder",
              "initiator") as res,
    ):  # fmt: skip
        ini.ready()
        res.ready()
        with nn.capture(pair, setup_pcap):
            # the Child SA fails where the kernel lacks ESP; the IKE SA stays
            ini.swanctl("--initiate", "--child", "qcd", timeout=15, check=False)
            sas = ini.swanctl("--list-sas")
            assert "ESTABLISHED" in sas, f"{sas}\n{ini.log()}\n{res.log()}"
            # a DPD exchange while both daemons live (the corpus's INFORMATIONALs)
            nn.wait_for_response(setup_pcap, wire.EXCHANGE_INFORMATIONAL)
        result = nn.crash_and_serve(pair, secret, res.crash, crash_pcap, ini.log)
        nn.save(setup_pcap, crash_pcap)
    summary(nn.summary_line(f"{ini.version()} (survivor) after {res.version()} crashed", result))


def child_failure(*logs: str) -> list[str]:
    """The log lines that say a Child SA could not be made."""
    pattern = re.compile(
        r"netlink response for Add SA|rejected Child SA|unable to add SAD "
        r"entry|unable to install .*IPsec SA|failed to establish CHILD_SA"
    )
    return [line.strip() for log in logs for line in log.splitlines() if pattern.search(line)]


def test_libreswan_liveness_after_crash_answered(
    pair: nn.NetnsPair, tmp_path: Path, summary: Callable[[str], None]
) -> None:
    secret = tmp_path / "qcd.secret"
    SecretStore(secret).create()
    watch_pcap = tmp_path / "libreswan-watch.pcap"
    probe_pcap = tmp_path / "libreswan-liveness.pcap"
    with (
        Pluto(pair.ns_i, tmp_path / "libreswan", nn.ADDR_I, nn.ADDR_R, "initiator",
              "responder") as ini,
        Charon(pair.ns_r, tmp_path / "strongswan", nn.ADDR_R, nn.ADDR_I, "responder",
               "initiator", child=True) as res,
    ):  # fmt: skip
        ini.ready()
        res.ready()
        out = ini.whack("--name", "qcd", "--initiate")
        assert "established IKE SA" in out, f"{out}\n{ini.log()}\n{res.log()}"
        failed = child_failure(ini.log(), res.log())
        crash = res.crash
        if failed:
            # does libreswan probe liveness without a Child SA? Crash the peer and watch.
            watch = 6.0
            with nn.capture(pair, watch_pcap):
                res.crash()
                time.sleep(watch)
            probes = [p for p in pcap.read_pcap(watch_pcap) if p.src == nn.ADDR_I]
            if not probes:
                why = (
                    f"{ini.version()} established the IKE SA, but the Child SA could not "
                    f"be installed ({' / '.join(failed[:3])}); libreswan 4.x sends IKEv2 "
                    f"liveness probes only on an established Child SA, and it sent none "
                    f"in {watch:.0f} s after the peer's crash (dpddelay=2): nothing for "
                    f"serve to answer on this kernel ({kernel_esp()})"
                )
                summary(f"skipped: {why}")
                pytest.skip(why)

            def crash() -> None:  # it probes all the same: the peer is down already
                pass

        result = nn.crash_and_serve(pair, secret, crash, probe_pcap, ini.log)
    summary(nn.summary_line(f"{ini.version()} (survivor) after {res.version()} crashed", result))
