"""Interop with a real IKEv2 daemon: strongSwan's charon.

Two charon instances, each in its own network namespace (joined by a veth pair), bring up an
IKEv2 IKE SA with a PSK and DPD every 2 s (childless, RFC 6023: this kernel may lack ESP, and
an IKE SA is all DPD needs). The responder's charon is killed with SIGKILL (a crash without a
reboot), and the kernel keeps IPsec policies for the pair (a transport-mode host-to-host ESP
policy, as its Child SA would have left; added by hand when charon left none). Then
``ikeqcd serve`` takes over the responder's address on UDP/500 and UDP/4500:

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

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ikeqcd import SecretStore, pcap, wire
from tests import interop_netns as nn

pytestmark = pytest.mark.interop

CHARON = "/usr/lib/ipsec/charon"
PSK = "ikeqcd-interop-psk-not-a-secret-0123456789"
PLUGINS = ("random nonce aes sha1 sha2 hmac kdf pem pkcs1 x509 pubkey gmp kernel-netlink "
           "socket-default vici")


def strongswan_conf(d: Path) -> str:
    return f"""charon {{
  load_modular = no
  load = {PLUGINS}
  install_routes = no
  install_virtual_ip = no
  # fast DPD retransmissions: 0.5 s, then x1.2 each, 10 tries (about 13 s in all)
  retransmit_timeout = 0.5
  retransmit_base = 1.2
  retransmit_tries = 10
  filelog {{
    main {{
      path = {d}/charon.log
      default = 1
      ike = 2
      net = 2
      flush_line = yes
      time_format = %T
    }}
  }}
  syslog {{
    daemon {{
      default = -1
    }}
  }}
  plugins {{
    vici {{
      socket = unix://{d}/charon.vici
    }}
  }}
}}
swanctl {{
  load = {PLUGINS}
  socket = unix://{d}/charon.vici
}}
"""


def swanctl_conf(me: str, peer: str, name: str) -> str:
    return f"""connections {{
  qcd {{
    version = 2
    local_addrs = {me}
    remote_addrs = {peer}
    dpd_delay = 2s
    childless = force
    local {{
      auth = psk
      id = {name}.ikeqcd.test
    }}
    remote {{
      auth = psk
    }}
  }}
}}
secrets {{
  ike-1 {{
    secret = "{PSK}"
  }}
}}
"""


class Charon:
    """One charon in a namespace: its own strongswan.conf (STRONGSWAN_CONF), vici socket and
    log under ``d``, and a private /run (a mount namespace: charon's pid file is fixed at
    /run/charon.pid, so two instances would otherwise refuse each other)."""

    def __init__(self, ns: str, d: Path, me: str, peer: str, name: str) -> None:
        self.d = d
        d.mkdir()
        (d / "run").mkdir()
        (d / "strongswan.conf").write_text(strongswan_conf(d))
        (d / "swanctl.conf").write_text(swanctl_conf(me, peer, name))
        self.env = dict(os.environ, STRONGSWAN_CONF=str(d / "strongswan.conf"))
        with open(d / "stdout", "w") as out:
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", ns, "unshare", "--mount", "sh", "-c",
                 f"mount --bind {d}/run /run && exec {CHARON}"],
                env=self.env, stdout=out, stderr=subprocess.STDOUT,
            )

    def log(self) -> str:
        path = self.d / "charon.log"
        return path.read_text(errors="replace") if path.exists() else "(no log)"

    def swanctl(self, *args: str, timeout: float = 10) -> str:
        r = subprocess.run(["swanctl", *args, "--uri", f"unix://{self.d}/charon.vici"],
                           env=self.env, capture_output=True, text=True, timeout=timeout)
        assert r.returncode == 0, f"swanctl {args}: {r.stdout}{r.stderr}\n{self.log()}"
        return r.stdout

    def ready(self, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while not (self.d / "charon.vici").exists():
            assert self.proc.poll() is None, f"charon exited: {(self.d / 'stdout').read_text()}"
            assert time.monotonic() < deadline, f"charon did not start: {self.log()}"
            time.sleep(0.05)
        self.swanctl("--load-all", "--file", str(self.d / "swanctl.conf"))

    def crash(self) -> None:
        """SIGKILL: no DELETE sent, no kernel state removed."""
        # The Popen pid is charon's own: ip netns exec, unshare and sh all exec in place.
        assert Path(f"/proc/{self.proc.pid}/comm").read_text().strip() == "charon"
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(5)

    def stop(self) -> None:
        nn.stop(self.proc)


@pytest.fixture
def summary(record_property: Callable[[str, object], None]) -> Callable[[str], None]:
    def line(text: str) -> None:
        record_property("interop_summary", text)

    return line


@pytest.fixture
def pair() -> Iterator[nn.NetnsPair]:
    why = nn.missing_prerequisite([CHARON, "swanctl", "tshark"])
    if why is not None:
        pytest.skip(f"strongSwan interop: {why}")
    with nn.netns_pair("s") as p:
        yield p


def in_window(packets: list[pcap.PcapPacket], t0: float, t1: float, src: str
              ) -> list[pcap.PcapPacket]:
    return [p for p in packets if t0 <= p.timestamp < t1 and p.src == src]


def test_strongswan_dpd_after_crash_answered_with_qcd_token(
    pair: nn.NetnsPair, tmp_path: Path, summary: Callable[[str], None]
) -> None:
    secret = tmp_path / "qcd.secret"
    SecretStore(secret).create()
    maker = SecretStore(secret, algorithm=None)
    maker.load()
    tm = maker.maker()
    ini = Charon(pair.ns_i, tmp_path / "initiator", nn.ADDR_I, nn.ADDR_R, "initiator")
    res = Charon(pair.ns_r, tmp_path / "responder", nn.ADDR_R, nn.ADDR_I, "responder")
    setup_pcap, crash_pcap = tmp_path / "strongswan-setup.pcap", tmp_path / "strongswan-crash.pcap"
    try:
        ini.ready()
        res.ready()
        with nn.capture(pair, setup_pcap):
            out = ini.swanctl("--initiate", "--ike", "qcd", timeout=15)
            assert "initiate completed successfully" in out, out
            sas = ini.swanctl("--list-sas")
            assert "ESTABLISHED" in sas, sas
            # one DPD exchange each way while both daemons live (the corpus's INFORMATIONALs)
            deadline = time.monotonic() + 6
            while res.log().count("parsed INFORMATIONAL response") < 1 or \
                    ini.log().count("parsed INFORMATIONAL response") < 1:
                assert time.monotonic() < deadline, res.log()
                time.sleep(0.1)
        left = pair.xfrm_policies(pair.ns_r)
        with nn.capture(pair, crash_pcap):
            res.crash()
            left_after_crash = pair.xfrm_policies(pair.ns_r)
            assert left_after_crash == left  # SIGKILL removes nothing from the kernel
            by_hand = 0
            if "proto esp" not in left_after_crash:
                nn.add_transport_policies(pair)  # what an installed Child SA would have left
                by_hand = 2
            policies = pair.xfrm_policies(pair.ns_r)
            assert "mode transport" in policies, policies
            # 1. no bypass: the leftover policy swallows the DPD requests
            blocked = [nn.start_serve(pair, secret, port, bypass=False) for port in (500, 4500)]
            t_a = time.time()
            time.sleep(2.5)
            t_b = time.time()
            blind = [nn.stop_serve(p) for p in blocked]
            # 2. the default: per-socket bypass; the initiator is still retransmitting
            served = [nn.start_serve(pair, secret, port, bypass=True) for port in (500, 4500)]
            t_c = time.time()
            time.sleep(7)
            t_d = time.time()
            counters = [nn.stop_serve(p) for p in served]
        if os.environ.get("IKEQCD_INTEROP_SAVE"):
            for f in (setup_pcap, crash_pcap):
                shutil.copy(f, Path(os.environ["IKEQCD_INTEROP_SAVE"]) / f.name)
    finally:
        ini.stop()
        res.stop()

    packets = pcap.read_pcap(crash_pcap)
    swallowed = in_window(packets, t_a, t_b, nn.ADDR_I)
    assert swallowed, f"the initiator sent no DPD request while the policy was in place\n{ini.log()}"
    assert [c["datagrams_in"] for c in blind] == [0, 0], blind
    assert all("IPsec bypass" not in c["ready"] for c in blind), blind

    # every request that reached the veth while both bypassing servers listened is answered
    requests = in_window(packets, t_c, t_d, nn.ADDR_I)
    replies = in_window(packets, t_c, t_d + 1, nn.ADDR_R)
    assert requests, f"no DPD retransmission reached serve\n{ini.log()}"
    for c in counters:
        assert c["reasons"]["REPLIED"] == c["datagrams_in"] == c["datagrams_out"], c
        assert "IPsec bypass" in c["ready"] and "no IPsec bypass" not in c["stderr"], c
    assert sum(c["datagrams_in"] for c in counters) >= len(requests), counters
    answered: dict[tuple[int, int, int, int], bytes] = {}
    for a in replies:
        r = wire.parse_qcd_reply(a.payload, nat_t=a.sport == 4500)
        assert r.invalid_ike_spi and r.response and len(r.tokens) == 1, r
        assert tm.verify(r.spi_i, r.spi_r, r.tokens[0])
        wire.parse_message(a.payload, nat_t=a.sport == 4500)
        answered[(a.sport, r.spi_i, r.spi_r, r.message_id)] = r.tokens[0]
    verified = 0
    for q in requests:
        h = wire.parse_header(q.payload, nat_t=q.dport == 4500)
        assert h.exchange == wire.EXCHANGE_INFORMATIONAL and not h.response, h
        token = answered.get((q.dport, h.spi_i, h.spi_r, h.message_id))
        assert token is not None, f"request {h} unanswered"
        verified += 1
    tokens = {t.hex() for t in answered.values()}
    n_replies = len(replies)

    decoded = subprocess.run([*nn.IKEQCD, "decode", "--pcap", str(crash_pcap),
                              "--secret-file", str(secret)],
                             capture_output=True, text=True, timeout=30, cwd=nn.ROOT)
    assert decoded.returncode == 0, decoded.stderr
    assert decoded.stdout.count("token VERIFIED") == n_replies, decoded.stdout
    assert decoded.stdout.count("N(INVALID_IKE_SPI)") == n_replies, decoded.stdout
    assert "not a valid IKEv2 message" not in decoded.stdout
    shark = subprocess.run(["tshark", "-r", str(crash_pcap), "-V", "-Y",
                            "isakmp.notify.msgtype == 16419"],
                           capture_output=True, text=True, timeout=60)
    assert shark.returncode == 0, shark.stderr
    assert shark.stdout.count("Notify Message Type: QUICK_CRASH_DETECTION (16419)") == n_replies
    assert shark.stdout.count("Notify Message Type: INVALID_IKE_SPI (4)") == n_replies
    assert "Malformed" not in shark.stdout
    for t in tokens:
        assert f"Token Secret Data: {t}" in shark.stdout

    ports = sorted({q.dport for q in requests})
    summary(
        f"strongSwan {strongswan_version()}: {verified} DPD requests answered with "
        f"INVALID_IKE_SPI + QCD_TOKEN and verified (UDP {'/'.join(map(str, ports))}; "
        f"ikeqcd decode and tshark agree); with --no-xfrm-bypass {len(swallowed)} requests "
        f"swallowed by the leftover transport-mode policy ({by_hand} added by hand), "
        "0 received"
    )


def strongswan_version() -> str:
    r = subprocess.run([CHARON, "--version"], capture_output=True, text=True, timeout=10)
    words = (r.stdout + r.stderr).split()
    return words[-1] if words else "?"
