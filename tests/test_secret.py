"""SecretStore: spec cases 3, 5 and 6; every refusal; permissions; restarts in another process;
active/standby export and import; a short SIGKILL campaign (scripts/crash_secret.py)."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import pickle
import stat
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import ikeqcd
import pytest
from ikeqcd import SecretStore, TokenMaker, errors
from ikeqcd.secret import MAGIC, SECRET_LEN, _decode, _encode

from .conftest import ROOT

SPIS = [(1, 2), (0x0123456789ABCDEF, 0xFEDCBA9876543210), (2**64 - 1, 0)]
HASHES = {"hmac-sha256": "sha256", "hmac-sha512": "sha512", "hmac-sha1": "sha1"}


@pytest.fixture
def path(tmp_path: Path) -> Path:
    d = tmp_path / "state"
    return d / "qcd.secret"


@pytest.fixture
def made(path: Path) -> Iterator[SecretStore]:
    s = SecretStore(path)
    assert s.load_or_create() is True
    yield s


def secrets_in(path: Path) -> tuple[bytes, ...]:
    return _decode(path.read_bytes(), "test").secrets


def tokens(store: SecretStore) -> list[list[bytes]]:
    m = store.maker()
    return [m.all_tokens(a, b) for a, b in SPIS]


def write_raw(path: Path, data: bytes, mode: int = 0o600) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.write_bytes(data)
    os.chmod(path, mode)


def refused(path: Path, *words: str, algorithm: str | None = "hmac-sha256") -> str:
    """Load must raise SecretFileError naming the file and the given words; the file is kept."""
    before = path.read_bytes() if path.is_file() and not path.is_symlink() else None
    with pytest.raises(errors.SecretFileError) as info:
        SecretStore(path, algorithm=algorithm).load()
    msg = str(info.value)
    assert str(path) in msg
    for w in words:
        assert w in msg, msg
    # load_or_create never replaces a refused file either
    with pytest.raises(errors.SecretFileError):
        SecretStore(path, algorithm=algorithm).load_or_create()
    if before is not None:
        assert path.read_bytes() == before
    return msg


# ---------------------------------------------------------------- spec cases


def test_case_5_first_start_creates_32_random_octets(path: Path) -> None:
    """Case 5: first start creates 32 random octets, persisted; permissions keep others out."""
    assert not path.parent.exists()
    s = SecretStore(path)
    assert not s.exists()
    assert s.load_or_create() is True
    assert s.exists() and s.generations == 1
    (key,) = secrets_in(path)
    assert len(key) == 32
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    # the persisted octets are the ones tokens come from
    want = hmac.new(key, (1).to_bytes(8, "big") + (2).to_bytes(8, "big"), "sha256").digest()
    assert s.maker().token(1, 2) == want
    # random: another store on another path gets another secret
    other = SecretStore(path.parent / "other.secret")
    other.create()
    assert secrets_in(path.parent / "other.secret") != (key,)
    assert other.fingerprint() != s.fingerprint()


@pytest.mark.parametrize("algorithm", sorted(SECRET_LEN))
def test_secret_sizes_per_algorithm(tmp_path: Path, algorithm: str) -> None:
    s = SecretStore(tmp_path / "d" / "x", algorithm=algorithm)
    s.create()
    assert [len(k) for k in secrets_in(s.path)] == [SECRET_LEN[algorithm]]
    assert SECRET_LEN["hmac-sha512"] == 64
    (key,) = secrets_in(s.path)
    msg = (5).to_bytes(8, "big") + (6).to_bytes(8, "big")
    want = hmac.new(key, msg, HASHES[algorithm]).digest()[: s.maker().token_len]
    assert s.maker().token(5, 6) == want


def test_case_3_restart_same_tokens_in_process(made: SecretStore) -> None:
    """Case 3 (same process, fresh object): loaded, not regenerated."""
    before = tokens(made)
    again = SecretStore(made.path)
    assert again.load_or_create() is False
    assert tokens(again) == before
    assert again.fingerprint() == made.fingerprint()


RESTART = """
import sys
from ikeqcd import SecretStore
s = SecretStore(sys.argv[1])
created = s.load_or_create()
m = s.maker()
print(int(created), s.fingerprint(), m.token(1, 2).hex(), m.token(2**64 - 1, 0).hex())
"""


def test_case_3_restart_in_separate_processes(path: Path) -> None:
    """Case 3: a restarted process (new interpreter) derives byte-identical tokens."""

    def run() -> list[str]:
        out = subprocess.run(
            [sys.executable, "-c", RESTART, str(path)], check=True, capture_output=True, text=True
        )
        return out.stdout.split()

    first, second, third = run(), run(), run()
    assert first[0] == "1" and second[0] == "0" and third[0] == "0"
    assert first[1:] == second[1:] == third[1:]
    here = SecretStore(path)
    here.load()
    assert [here.fingerprint(), here.maker().token(1, 2).hex()] == first[1:3]


def test_case_6_rotation_k_generations_give_k_plus_1_tokens(made: SecretStore) -> None:
    """Case 6: with k stored older generations (k <= 3), a reply carries k+1 tokens."""
    history = [made.maker().token(1, 2)]
    for k in range(1, 4):
        fp = made.fingerprint()
        made.rotate()
        assert made.fingerprint() != fp
        assert made.generations == k + 1
        all_tokens = made.maker().all_tokens(1, 2)
        assert len(all_tokens) == k + 1
        # older generations shifted down, still verifiable; the new current one is new
        assert all_tokens[1:] == history[::-1][:k]
        assert all_tokens[0] not in history
        history.append(all_tokens[0])
        for t in history:
            assert made.maker().verify(1, 2, t)
        # persisted: a fresh load agrees
        again = SecretStore(made.path)
        again.load()
        assert again.maker().all_tokens(1, 2) == all_tokens


def test_rotate_keeps_at_most_4(made: SecretStore) -> None:
    seen = [secrets_in(made.path)[0]]
    for _ in range(7):
        made.rotate()
        seen.append(secrets_in(made.path)[0])
        assert made.generations == min(len(seen), 4)
    assert secrets_in(made.path) == tuple(seen[::-1][:4])
    assert len(made.maker().all_tokens(1, 2)) == 4
    assert made.rotated_at is not None and made.created_at is not None
    assert made.rotated_at >= made.created_at


# ---------------------------------------------------------------- refusals


def test_load_missing_and_create_existing(path: Path, made: SecretStore) -> None:
    with pytest.raises(errors.SecretFileError, match="no secret file"):
        SecretStore(path.parent / "nope").load()
    with pytest.raises(errors.SecretFileError, match="already exists"):
        SecretStore(path).create()
    fresh = SecretStore(path.parent / "unused")
    for call in (fresh.maker, fresh.fingerprint, fresh.rotate, fresh.export_bytes):
        with pytest.raises(errors.SecretFileError, match="no secret set loaded"):
            call()
    assert fresh.generations == 0 and fresh.created_at is None


def test_truncated_at_every_offset(made: SecretStore) -> None:
    data = made.path.read_bytes()
    for n in range(len(data)):
        write_raw(made.path, data[:n])
        with pytest.raises(errors.SecretFileError) as info:
            SecretStore(made.path).load()
        assert str(made.path) in str(info.value)
        assert "truncated" in str(info.value) or "corrupt" in str(info.value), n
    write_raw(made.path, data)
    SecretStore(made.path).load()


def test_every_bit_flip_refused(made: SecretStore) -> None:
    data = made.path.read_bytes()
    for i in range(len(data)):
        for bit in (0x01, 0x80):
            bad = bytearray(data)
            bad[i] ^= bit
            write_raw(made.path, bytes(bad))
            with pytest.raises(errors.SecretFileError):
                SecretStore(made.path).load()


def test_corruption_kinds(made: SecretStore) -> None:
    p = made.path
    good = p.read_bytes()
    s = _decode(good, "t")
    cases: list[tuple[bytes, tuple[str, ...]]] = [
        (b"", ("truncated",)),
        (b"garbage that is long enough to be a header", ("bad magic",)),
        (b"X" + good[1:], ("bad magic",)),
        (good + b"\x00", ("trailing data",)),
        (good[:-1] + bytes([good[-1] ^ 1]), ("checksum mismatch",)),
        (_encode(s.algorithm, s.secrets, 0, 0, version=2), ("unsupported format version 2",)),
        (_encode(s.algorithm, s.secrets, 0, 0, version=0), ("version 0",)),
        (_encode("hmac-md5", s.secrets, 0, 0), ("unknown algorithm",)),
        (_encode("hmac-sha256", [b"k" * 16], 0, 0), ("16 octets",)),
        (_encode("hmac-sha256", [b"k" * 64], 0, 0), ("64 octets",)),
        (_encode("hmac-sha512", [b"k" * 32], 0, 0), ("32 octets",)),
        (_encode("hmac-sha256", [], 0, 0, secret_len=32), ("0 generations",)),
        (_encode("hmac-sha256", [b"k" * 32] * 5, 0, 0), ("5 generations",)),
        (_encode("hmac-sha256", [b"k" * 32] * 2, 0, 0)[:-32], ("truncated",)),
    ]
    for data, words in cases:
        write_raw(p, data)
        refused(p, *words, algorithm=None)
    # a file of another version is kept as is and not rewritten by a rotate either
    write_raw(p, good)
    made.load()


def test_algorithm_mismatch(tmp_path: Path) -> None:
    p = tmp_path / "d" / "s"
    SecretStore(p, algorithm="hmac-sha512").create()
    msg = refused(p, "hmac-sha512", "hmac-sha256", algorithm="hmac-sha256")
    assert "algorithm=" in msg
    anyalg = SecretStore(p, algorithm=None)
    assert anyalg.load_or_create() is False
    assert anyalg.algorithm == "hmac-sha512" and anyalg.maker().token_len == 64
    with pytest.raises(errors.InvalidAlgorithm):
        SecretStore(p, algorithm="md5")
    with pytest.raises(errors.SecretFileError, match="needs an algorithm"):
        SecretStore(tmp_path / "d" / "new", algorithm=None).create()
    with pytest.raises(errors.SecretFileError, match="algorithm unknown"):
        _ = SecretStore(tmp_path / "d" / "new", algorithm=None).algorithm


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o602, 0o660, 0o666, 0o700 | 0o070])
def test_file_open_to_others_refused(made: SecretStore, mode: int) -> None:
    os.chmod(made.path, mode)
    refused(made.path, f"mode {mode:04o}", "chmod 600")
    assert stat.S_IMODE(os.stat(made.path).st_mode) == mode  # not "fixed" behind our back


@pytest.mark.parametrize("mode", [0o400, 0o600, 0o700])
def test_owner_only_modes_accepted(made: SecretStore, mode: int) -> None:
    os.chmod(made.path, mode)
    SecretStore(made.path).load()


@pytest.mark.parametrize("mode", [0o770, 0o757, 0o777])
def test_directory_writable_by_others_refused(made: SecretStore, mode: int) -> None:
    os.chmod(made.path.parent, mode)
    try:
        refused(made.path, "writable by", f"chmod go-w {made.path.parent}")
        with pytest.raises(errors.SecretFileError):
            SecretStore(made.path.parent / "new").create()
    finally:
        os.chmod(made.path.parent, 0o700)


@pytest.mark.parametrize("mode", [0o1777, 0o1770])
def test_shared_sticky_directory_gets_no_chmod_advice(tmp_path: Path, mode: int) -> None:
    """A file in a /tmp-like directory: the advice is a private directory, never a chmod of
    the shared one."""
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, mode)
    write_raw(shared / "qcd.secret", b"x" * 80)
    msg = refused(shared / "qcd.secret", "writable by", "sticky", "mkdir -m 700")
    assert "chmod" not in msg


def test_file_in_tmp_itself_gets_private_dir_advice() -> None:
    """The real /tmp (sticky, world-writable): no advice to change /tmp."""
    st = os.stat("/tmp")
    if not st.st_mode & 0o002:
        pytest.skip("/tmp is not world-writable on this machine")
    fd, name = tempfile.mkstemp(dir="/tmp", suffix=".secret")
    os.close(fd)
    try:
        msg = refused(Path(name), "writable by", "mkdir -m 700")
        assert "chmod" not in msg and "/tmp " not in msg.split(";", 1)[1]
    finally:
        os.unlink(name)


def test_directory_0755_accepted(made: SecretStore) -> None:
    os.chmod(made.path.parent, 0o755)
    SecretStore(made.path).load()


def test_owner_mismatch_refused(made: SecretStore, monkeypatch: pytest.MonkeyPatch) -> None:
    if os.geteuid() == 0:
        os.chown(made.path, 4242, -1)  # root itself is accepted as owner; another user is not
    else:
        me = os.geteuid()
        monkeypatch.setattr(os, "geteuid", lambda: me + 1)
    refused(made.path, "owned by uid", "chown")


def test_symlink_refused(made: SecretStore) -> None:
    link = made.path.parent / "link.secret"
    link.symlink_to(made.path)
    refused(link, "symlink")
    dangling = made.path.parent / "dangling.secret"
    dangling.symlink_to(made.path.parent / "absent")
    assert SecretStore(dangling).exists()
    refused(dangling, "symlink")
    assert not (made.path.parent / "absent").exists()  # never created through the link


def test_not_a_regular_file_refused(tmp_path: Path) -> None:
    d = tmp_path / "d"
    d.mkdir(mode=0o700)
    (d / "dir").mkdir(mode=0o700)
    msg = refused(d / "dir", "is a directory", str(d / "dir" / "qcd.secret"))
    assert "chmod" not in msg  # what is wrong is the path, not a mode
    os.mkfifo(d / "fifo", 0o600)
    refused(d / "fifo", "not a regular file")  # and does not block on the fifo


# ---------------------------------------------------------------- durability details


def test_umask_does_not_loosen_or_break_modes(path: Path) -> None:
    for umask in (0o000, 0o777, 0o022):
        old = os.umask(umask)
        try:
            s = SecretStore(path.parent / f"u{umask:o}" / "s")
            s.create()
            s.rotate()
        finally:
            os.umask(old)
        assert stat.S_IMODE(os.stat(s.path).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(s.path.parent).st_mode) == 0o700
        SecretStore(s.path).load()


def test_stale_temp_files_are_cleaned_and_never_loaded(made: SecretStore) -> None:
    d = made.path.parent
    stale = d / ".qcd.secret.tmp-0123456789abcdef"
    stale.write_bytes(b"half a secret")
    made.load()  # reading ignores it
    made.rotate()  # the next writer removes it
    assert not stale.exists()
    assert sorted(os.listdir(d)) == [".qcd.secret.lock", "qcd.secret"]


def test_rotate_refuses_when_file_changed_elsewhere(made: SecretStore) -> None:
    other = SecretStore(made.path)
    other.load()
    other.rotate()
    fp = made.fingerprint()
    with pytest.raises(errors.SecretFileError, match="changed on disk"):
        made.rotate()
    assert made.fingerprint() == fp  # memory untouched
    made.load()
    made.rotate()
    assert made.generations == 3


@pytest.mark.parametrize("step", ["fsync", "replace"])
def test_failed_write_changes_nothing(
    made: SecretStore, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    before, fp = made.path.read_bytes(), made.fingerprint()

    def fail(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, step, fail)
    with pytest.raises(errors.SecretFileError, match="cannot write.*No space left"):
        made.rotate()
    monkeypatch.undo()
    assert made.path.read_bytes() == before and made.fingerprint() == fp
    assert sorted(os.listdir(made.path.parent)) == [".qcd.secret.lock", "qcd.secret"]
    made.rotate()


def test_concurrent_rotations_serialize(made: SecretStore) -> None:
    """Threads rotating one shared store: each rotation lands, the file stays valid."""

    def work() -> None:
        for _ in range(10):
            made.rotate()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    again = SecretStore(made.path)
    again.load()
    assert again.fingerprint() == made.fingerprint() and again.generations == 4


# ---------------------------------------------------------------- secrecy of the API surface


def test_repr_fingerprint_errors_never_show_secret(made: SecretStore) -> None:
    made.rotate()
    keys = secrets_in(made.path)
    shown = [repr(made), str(made), made.fingerprint(), repr(SecretStore(made.path))]
    try:
        SecretStore(made.path, algorithm="hmac-sha512").load()
    except errors.SecretFileError as e:
        shown.append(str(e))
    text = "\n".join(shown)
    assert str(made.path) in repr(made) and made.fingerprint() in repr(made)
    assert "generations=2" in repr(made)
    for k in keys:
        assert k.hex() not in text and repr(k) not in text and k.hex()[:16] not in text
    assert len(made.fingerprint()) == 16
    int(made.fingerprint(), 16)
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(made)


def test_fingerprint_definition(made: SecretStore) -> None:
    keys = secrets_in(made.path)
    h = hashlib.sha256(b"ikeqcd secret-set fingerprint v1\x00hmac-sha256\x00\x01" + keys[0])
    assert made.fingerprint() == h.hexdigest()[:16]


# ---------------------------------------------------------------- active / standby (RFC §6)


def test_export_import_standby_identical_tokens(made: SecretStore, tmp_path: Path) -> None:
    made.rotate()
    blob = made.export_bytes()
    assert blob == made.path.read_bytes() and blob.startswith(MAGIC)
    standby_path = tmp_path / "standby" / "qcd.secret"
    standby = SecretStore.import_to(standby_path, blob)
    assert tokens(standby) == tokens(made)
    assert standby.fingerprint() == made.fingerprint()
    assert standby_path.read_bytes() == made.path.read_bytes()
    assert stat.S_IMODE(os.stat(standby_path).st_mode) == 0o600
    # a restarted standby loads the same set
    again = SecretStore(standby_path)
    assert again.load_or_create() is False and tokens(again) == tokens(made)
    # the active rotates later: the standby takes the new set only when told to replace
    made.rotate()
    with pytest.raises(errors.SecretFileError, match="replace=True"):
        again.import_bytes(made.export_bytes())
    again.import_bytes(made.export_bytes(), replace=True)
    assert tokens(again) == tokens(made) and again.generations == 3


def test_import_refuses_bad_blobs(made: SecretStore, tmp_path: Path) -> None:
    blob = made.export_bytes()
    target = tmp_path / "sb" / "s"
    for bad in (blob[:-1], blob[:10], b"", blob[:40] + bytes([blob[40] ^ 4]) + blob[41:]):
        with pytest.raises(errors.SecretFileError, match="imported secret set"):
            SecretStore.import_to(target, bad)
    assert not target.exists()
    with pytest.raises(errors.SecretFileError, match="hmac-sha512 was requested"):
        SecretStore(target, algorithm="hmac-sha512").import_bytes(blob)
    assert not target.exists()


def test_public_export() -> None:
    assert ikeqcd.SecretStore is SecretStore
    assert "SecretStore" in ikeqcd.__all__
    assert isinstance(SecretStore.maker, object) and TokenMaker is ikeqcd.TokenMaker


# ---------------------------------------------------------------- crash campaign (short)


def test_sigkill_during_create_and_rotate(tmp_path: Path) -> None:
    """30 SIGKILLs at random moments; the long run is scripts/crash_secret.py --kills 1000."""
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "crash_secret.py"),
            "--kills", "30", "--fresh-every", "5", "--seed", "6290",
            "--dir", str(tmp_path / "crash"), "--json",
        ],
        capture_output=True,
        check=False,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    summary = json.loads(out.stdout)
    assert summary["kills"] == 30 and summary["failures"] == 0
    assert sum(summary["states"].values()) == 30
