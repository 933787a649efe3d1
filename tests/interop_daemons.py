"""The IKE daemons of the interop tests, one instance per network namespace, each with its
own configuration, control socket, log and pid file under a private directory:

- :class:`Charon`: strongSwan 5.9 (Debian ``strongswan-charon`` + ``strongswan-swanctl``),
  configured through ``STRONGSWAN_CONF`` and swanctl over its own vici socket;
- :class:`Pluto`: libreswan 4.x, from the Debian ``.deb`` unpacked without installing it
  (the package conflicts with strongSwan's): ``.ci/run`` unpacks it under
  :data:`LIBRESWAN_ROOT`.

Both daemons hard-code paths under /run (charon's pid file) and /usr/libexec/ipsec (pluto's
helpers): each runs in its own mount namespace where a private directory is bound there, so
nothing on the host changes.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import TypeVar

from tests import interop_netns as nn

CHARON = "/usr/lib/ipsec/charon"
PSK = "ikeqcd-interop-psk-not-a-secret-0123456789"
PLUGINS = (
    "random nonce aes sha1 sha2 hmac kdf pem pkcs1 x509 pubkey gmp kernel-netlink "
    "socket-default vici"
)
LIBRESWAN_ROOT = Path(os.environ.get("IKEQCD_LIBRESWAN_ROOT", "/opt/ikeqcd-interop/libreswan"))
"""Where the libreswan .deb (and the libraries it needs beyond the base system) is
unpacked with ``dpkg-deb -x``; override with IKEQCD_LIBRESWAN_ROOT."""
PLUTO = LIBRESWAN_ROOT / "usr/libexec/ipsec/pluto"


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
      knl = 2
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


def swanctl_conf(
    me: str, peer: str, name: str, peer_name: str, *, child: bool, mobike: bool = True
) -> str:
    """A PSK connection with DPD every 2 s; ``child``: ask for a transport-mode Child SA in
    IKE_AUTH (for peers without RFC 6023), else childless; ``mobike``: MOBIKE, which moves
    the SA to UDP/4500 in IKE_AUTH (without it, it stays on UDP/500)."""
    children = "    children {\n      qcd {\n        mode = transport\n      }\n    }\n"
    return f"""connections {{
  qcd {{
    version = 2
    local_addrs = {me}
    remote_addrs = {peer}
    dpd_delay = 2s
    mobike = {"yes" if mobike else "no"}
    childless = {"allow" if child else "force"}
    local {{
      auth = psk
      id = {name}.ikeqcd.test
    }}
    remote {{
      auth = psk
      id = {peer_name}.ikeqcd.test
    }}
{children if child else ""}  }}
}}
secrets {{
  ike-1 {{
    secret = "{PSK}"
  }}
}}
"""


D = TypeVar("D", bound="Daemon")


class Daemon:
    """A daemon process started by this module; a context manager that stops it."""

    proc: subprocess.Popen[bytes]
    comm: str
    d: Path

    def log(self) -> str:
        raise NotImplementedError

    def crash(self) -> None:
        """SIGKILL: no DELETE sent, no kernel state removed."""
        # The Popen pid is the daemon's own: ip netns exec, unshare and sh all exec in place.
        assert Path(f"/proc/{self.proc.pid}/comm").read_text().strip() == self.comm
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(5)

    def stop(self) -> None:
        nn.stop(self.proc)

    def __enter__(self: D) -> D:  # noqa: PYI019 (typing.Self is 3.11+)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _start(self, ns: str, mounts: str, argv: str, env: dict[str, str] | None) -> None:
        with open(self.d / "stdout", "w") as out:
            self.proc = subprocess.Popen(
                [
                    "ip",
                    "netns",
                    "exec",
                    ns,
                    "unshare",
                    "--mount",
                    "sh",
                    "-c",
                    f"{mounts} && exec {argv}",
                ],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def _wait_for(self, path: Path, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while not path.exists():
            assert self.proc.poll() is None, f"{self.comm} exited:\n{self.log()}"
            assert time.monotonic() < deadline, f"{self.comm} did not start:\n{self.log()}"
            time.sleep(0.05)


class Charon(Daemon):
    """One charon: its own strongswan.conf (STRONGSWAN_CONF), vici socket and log under
    ``d``, and a private /run (charon's pid file is fixed at /run/charon.pid)."""

    comm = "charon"

    def __init__(
        self,
        ns: str,
        d: Path,
        me: str,
        peer: str,
        name: str,
        peer_name: str,
        *,
        child: bool = False,
        mobike: bool = True,
    ) -> None:
        self.d = d
        d.mkdir()
        (d / "run").mkdir()
        (d / "strongswan.conf").write_text(strongswan_conf(d))
        (d / "swanctl.conf").write_text(
            swanctl_conf(me, peer, name, peer_name, child=child, mobike=mobike)
        )
        self.env = dict(os.environ, STRONGSWAN_CONF=str(d / "strongswan.conf"))
        self._start(ns, f"mount --bind {d}/run /run", CHARON, self.env)

    def log(self) -> str:
        path = self.d / "charon.log"
        return path.read_text(errors="replace") if path.exists() else "(no log)"

    def swanctl(self, *args: str, timeout: float = 10, check: bool = True) -> str:
        r = subprocess.run(
            ["swanctl", *args, "--uri", f"unix://{self.d}/charon.vici"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert r.returncode == 0 or not check, f"swanctl {args}: {r.stdout}{r.stderr}\n{self.log()}"
        return r.stdout

    def ready(self) -> None:
        self._wait_for(self.d / "charon.vici")
        self.swanctl("--load-all", "--file", str(self.d / "swanctl.conf"))

    def version(self) -> str:
        r = subprocess.run(
            [CHARON, "--version"], capture_output=True, text=True, timeout=10, check=False
        )
        words = (r.stdout + r.stderr).split()
        return f"strongSwan {words[-1] if words else '?'}"


def certutil() -> str | None:
    """NSS's certutil (pluto's key database), unpacked next to libreswan or installed."""
    unpacked = LIBRESWAN_ROOT / "usr/bin/certutil"
    return str(unpacked) if unpacked.exists() else shutil.which("certutil")


def libreswan_missing() -> str | None:
    """Why libreswan cannot run here (``None``: it can)."""
    if not PLUTO.exists():
        return (
            f"libreswan is not unpacked at {LIBRESWAN_ROOT} (.ci/run does it: apt-get "
            "download libreswan and its missing libraries, dpkg-deb -x; the package "
            "conflicts with strongSwan's, so it is not installed)"
        )
    r = subprocess.run(
        ["ldd", str(PLUTO)],
        capture_output=True,
        text=True,
        env=Pluto.lib_env(),
        timeout=10,
        check=False,
    )
    if certutil() is None:
        return "NSS's certutil (Debian libnss3-tools) is not installed: pluto needs a key database"
    missing = re.findall(r"^\s*(\S+) => not found", r.stdout, re.MULTILINE)
    if missing:
        return f"libreswan's pluto lacks libraries: {', '.join(missing)}"
    return None


class Pluto(Daemon):
    """One pluto: ipsec.conf, ipsec.secrets, an NSS database, its control socket and log
    under ``d``; /usr/libexec/ipsec (pluto runs its addconn from there) and /run are bound to
    the unpacked package and to ``d/run`` in its mount namespace."""

    comm = "pluto"

    @staticmethod
    def lib_env() -> dict[str, str]:
        return dict(os.environ, LD_LIBRARY_PATH=str(LIBRESWAN_ROOT / "usr/lib/x86_64-linux-gnu"))

    def __init__(self, ns: str, d: Path, me: str, peer: str, name: str, peer_name: str) -> None:
        self.d = d
        self.ns = ns
        (d / "nss").mkdir(parents=True)
        (d / "run/pluto").mkdir(parents=True)
        self.env = self.lib_env()
        nn.sh(
            certutil() or "certutil",
            "-N",
            "-d",
            f"sql:{d}/nss",
            "--empty-password",
            env=self.env,
        )
        (d / "ipsec.conf").write_text(
            "config setup\n    uniqueids=no\n"
            "conn qcd\n    keyexchange=ike\n    ikev2=insist\n"
            f"    left={me}\n    leftid=@{name}.ikeqcd.test\n"
            f"    right={peer}\n    rightid=@{peer_name}.ikeqcd.test\n"
            "    authby=secret\n    type=transport\n    auto=add\n    dpddelay=2\n"
            "    dpdaction=clear\n"
        )
        secrets = d / "ipsec.secrets"
        secrets.write_text(f'@{name}.ikeqcd.test @{peer_name}.ikeqcd.test : PSK "{PSK}"\n')
        secrets.chmod(0o600)
        libexec = LIBRESWAN_ROOT / "usr/libexec/ipsec"
        mounts = (
            f"mount -t tmpfs ikeqcd-libexec /usr/libexec && mkdir /usr/libexec/ipsec && "
            f"mount --bind {libexec} /usr/libexec/ipsec && mount --bind {d}/run /run"
        )
        self._start(
            ns,
            mounts,
            f"/usr/libexec/ipsec/pluto --nofork --config {d}/ipsec.conf "
            f"--secretsfile {secrets} --ipsecdir {d} --nssdir {d}/nss "
            f"--logfile {d}/pluto.log --no-dnssec --use-xfrm --rundir /run/pluto "
            "--dumpdir /run/pluto",
            self.env,
        )

    def log(self) -> str:
        path = self.d / "pluto.log"
        text = path.read_text(errors="replace") if path.exists() else "(no log)"
        return text + (self.d / "stdout").read_text(errors="replace")

    def whack(self, *args: str, timeout: float = 15) -> str:
        libexec = LIBRESWAN_ROOT / "usr/libexec/ipsec"
        r = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                self.ns,
                str(libexec / "whack"),
                "--rundir",
                str(self.d / "run/pluto"),
                *args,
            ],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return r.stdout + r.stderr

    def ready(self) -> None:
        self._wait_for(self.d / "run/pluto/pluto.ctl")
        self.whack("--listen")
        libexec = LIBRESWAN_ROOT / "usr/libexec/ipsec"
        nn.sh(
            "ip",
            "netns",
            "exec",
            self.ns,
            str(libexec / "addconn"),
            "--ctlsocket",
            str(self.d / "run/pluto/pluto.ctl"),
            "--config",
            str(self.d / "ipsec.conf"),
            "qcd",
            env=self.env,
        )

    def version(self) -> str:
        r = subprocess.run(
            [str(PLUTO), "--version"],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=10,
            check=False,
        )
        words = r.stdout.split()
        return f"libreswan {words[1] if len(words) > 1 else '?'}"


def kernel_esp() -> str:
    """What the running kernel's configuration says about ESP (``CONFIG_INET_ESP``), read
    from /proc/config.gz where the kernel exposes it."""
    try:
        with gzip.open("/proc/config.gz", "rt") as f:
            config = f.read()
    except OSError:
        return "kernel configuration not readable"
    m = re.search(r"^(CONFIG_INET_ESP=\S+|# CONFIG_INET_ESP is not set)$", config, re.MULTILINE)
    return m.group(1) if m else "CONFIG_INET_ESP not in the kernel configuration"
