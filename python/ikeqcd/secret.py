"""The token maker's durable secret set (RFC 6290 §5.1, §6, §9.1).

:class:`SecretStore` keeps QCD_SECRET and up to 3 older generations in one small file, so that
a rebooted maker regenerates byte-identical tokens (§5.1: "kept in non-volatile storage") and
a standby gateway can be given the same set (§6).

Life cycle::

    store = SecretStore("/var/lib/ikeqcd/qcd.secret")
    store.load_or_create()      # first start: 32 random octets from os.urandom, persisted
    maker = store.maker()       # TokenMaker over every generation, current first
    store.rotate()              # new current generation; at most 4 generations in total

File format, version 1 (all integers big-endian)::

    offset  size  field
    0       15    magic  b"IKEQCD-SECRETS\\n"
    15      1     version = 1
    16      4     total file size in octets, checksum included
    20      1     n = length of the algorithm name (1..32)
    21      n     algorithm name, ASCII ("hmac-sha256", "hmac-sha512", "hmac-sha1")
    21+n    1     g = number of generations (1..4), current first
    22+n    2     s = size of each secret (32; 64 for hmac-sha512)
    24+n    8     created_at, Unix seconds
    32+n    8     rotated_at, Unix seconds (0: never rotated)
    40+n    g*s   the secrets, current first
    end-32  32    SHA-256 over every octet before it

The checksum detects corruption and truncation; it is not a MAC. Anyone who can write the file
can replace the secret, which is why the file must be 0600 and its directory must not be
writable by group or others.

Durability: a write goes to a fresh temporary file in the same directory (``O_CREAT|O_EXCL``,
mode 0600), is flushed and fsync'ed, renamed over the secret file with :func:`os.replace`, and
the directory is fsync'ed. A process killed at any moment leaves either the complete old file
or the complete new one. Writers serialize on an ``flock`` of ``.<name>.lock`` beside the file
(kept, never deleted); under that lock, temporary files left by killed writers are removed.

Refusals: a file that is truncated, corrupt, of another version or algorithm, has a wrong
secret size or generation count, is a symlink or not a regular file, is accessible by group or
others, is owned by another user (other than root), or sits in a directory that group or others
can write, raises :class:`~ikeqcd.errors.SecretFileError`. A bad file is never replaced or
repaired: every peer holds tokens derived from it, so a silent new secret would break them all.

POSIX only (``fcntl``, ``O_NOFOLLOW``, modes).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import hmac
import os
import secrets as _random
import shlex
import stat
import struct
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from ikeqcd._core import TokenMaker
from ikeqcd._secret_paths import check_dir, check_owner
from ikeqcd.errors import InvalidAlgorithm, SecretFileError

__all__ = ["FORMAT_VERSION", "MAX_GENERATIONS", "SECRET_LEN", "SecretStore"]

MAGIC = b"IKEQCD-SECRETS\n"
FORMAT_VERSION = 1
MAX_GENERATIONS = 4
"""Current secret plus up to 3 older ones (RFC 6290 §5.1)."""
SECRET_LEN: dict[str, int] = {"hmac-sha256": 32, "hmac-sha512": 64, "hmac-sha1": 32}
"""Octets of a fresh secret per algorithm: 32 (RFC 6290 §5.1); 64 for HMAC-SHA-512."""

_FINGERPRINT_LABEL = b"ikeqcd secret-set fingerprint v1\x00"
_CHECKSUM_LEN = 32
_HEAD = struct.Struct(">15sBIB")  # magic, version, total size, algorithm-name length
_MID = struct.Struct(">BHQQ")  # generations, secret size, created_at, rotated_at
_MIN_LEN = _HEAD.size + 1 + _MID.size + _CHECKSUM_LEN
_MAX_LEN = _HEAD.size + 32 + _MID.size + MAX_GENERATIONS * 64 + _CHECKSUM_LEN
_TMP_INFIX = ".tmp-"


@dataclass(frozen=True, repr=False)
class _SecretSet:
    """A decoded, validated file. ``repr=False``: the secrets must never be printed."""

    algorithm: str
    secrets: tuple[bytes, ...]
    created_at: int
    rotated_at: int
    checksum: bytes


def _encode(
    algorithm: str,
    secrets: Sequence[bytes],
    created_at: int,
    rotated_at: int,
    *,
    version: int = FORMAT_VERSION,
    secret_len: int | None = None,
) -> bytes:
    """Serialize without validation (tests use it to build files the reader must refuse)."""
    name = algorithm.encode("ascii")
    s = len(secrets[0]) if secret_len is None and secrets else (secret_len or 0)
    body = name + _MID.pack(len(secrets), s, created_at, rotated_at) + b"".join(secrets)
    total = _HEAD.size + len(body) + _CHECKSUM_LEN
    data = _HEAD.pack(MAGIC, version, total, len(name)) + body
    return data + hashlib.sha256(data).digest()


def _decode(data: bytes, where: str) -> _SecretSet:
    """Parse and validate; every problem raises SecretFileError naming ``where``."""

    def bad(what: str, fix: str, reason: str = "corrupt") -> NoReturn:
        raise SecretFileError(f"{where}: {what}; {fix}", reason=reason)

    restore = "restore it from a backup or the standby, or delete it to make a new secret set"
    if len(data) < _HEAD.size:
        bad(f"truncated ({len(data)} octets, the header alone is {_HEAD.size})", restore)
    magic, version, total, name_len = _HEAD.unpack_from(data)
    if magic != MAGIC:
        bad("not an ikeqcd secret file (bad magic)", "check the path")
    if version != FORMAT_VERSION:
        bad(
            f"unsupported format version {version} (this ikeqcd reads version {FORMAT_VERSION})",
            "use the ikeqcd version that wrote it",
        )
    if not _MIN_LEN <= total <= _MAX_LEN or not 1 <= name_len <= 32:
        bad(f"corrupt header (size {total}, algorithm name length {name_len})", restore)
    if len(data) != total:
        what = "truncated" if len(data) < total else "has trailing data"
        bad(f"{what} ({len(data)} octets, the header says {total})", restore)
    body, checksum = data[:-_CHECKSUM_LEN], data[-_CHECKSUM_LEN:]
    if not hmac.compare_digest(hashlib.sha256(body).digest(), checksum):
        bad("corrupt (checksum mismatch)", restore)
    off = _HEAD.size
    try:
        algorithm = body[off : off + name_len].decode("ascii")
    except UnicodeDecodeError:
        bad("corrupt (algorithm name is not ASCII)", restore)
    off += name_len
    if len(body) < off + _MID.size:
        bad("corrupt (header runs past the end)", restore)
    gens, slen, created_at, rotated_at = _MID.unpack_from(body, off)
    off += _MID.size
    if algorithm not in SECRET_LEN:
        bad(f"unknown algorithm {algorithm!r}", f"expected one of {sorted(SECRET_LEN)}",
            "algorithm")
    if not 1 <= gens <= MAX_GENERATIONS:
        bad(f"holds {gens} generations (1..{MAX_GENERATIONS} allowed)", restore)
    if slen != SECRET_LEN[algorithm]:
        bad(f"secrets of {slen} octets ({algorithm} uses {SECRET_LEN[algorithm]})", restore)
    if len(body) - off != gens * slen:
        bad(f"{len(body) - off} octets of secrets where {gens} x {slen} were declared", restore)
    keys = tuple(body[off + i * slen : off + (i + 1) * slen] for i in range(gens))
    return _SecretSet(algorithm, keys, created_at, rotated_at, checksum)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SecretStore:
    """The maker's QCD_SECRET and up to 3 older generations, in one durable file.

    Args:
        path: the secret file. Its directory is created with mode 0700 if missing.
        algorithm: ``"hmac-sha256"`` (default, 32-octet secrets), ``"hmac-sha512"`` (64) or
            ``"hmac-sha1"`` (32). A file with another algorithm is refused; ``None`` accepts
            whatever the file says (and creates nothing: :meth:`create` then needs a name).

    Raises:
        InvalidAlgorithm: an unknown algorithm name.

    Not picklable, and its ``repr`` shows the path, algorithm, generation count and
    :meth:`fingerprint`, never secret octets. Instances are safe to share between threads;
    several processes may share one file (writes are serialized and a rotate refuses to
    overwrite a file that another process changed since this one loaded it).
    """

    def __init__(self, path: str | os.PathLike[str], *, algorithm: str | None = "hmac-sha256"):
        if algorithm is not None and algorithm not in SECRET_LEN:
            raise InvalidAlgorithm(
                f"unknown algorithm {algorithm!r}; use one of {sorted(SECRET_LEN)} or None"
            )
        self._path = Path(os.path.abspath(os.fspath(path)))
        self._requested = algorithm
        self._set: _SecretSet | None = None
        self._mutex = threading.RLock()

    # ----------------------------------------------------------------- inspection

    @property
    def path(self) -> Path:
        """Absolute path of the secret file."""
        return self._path

    @property
    def algorithm(self) -> str:
        """The HMAC algorithm of the loaded set (before loading: the requested one).

        Raises:
            SecretFileError: ``algorithm=None`` was given and nothing is loaded yet.
        """
        s = self._set
        if s is not None:
            return s.algorithm
        if self._requested is None:
            raise SecretFileError(
                f"{self._path}: algorithm unknown until the file is loaded", reason="not-loaded"
            )
        return self._requested

    @property
    def loaded(self) -> bool:
        """True once a secret set is in memory (after load, create or import)."""
        return self._set is not None

    @property
    def generations(self) -> int:
        """Number of generations in memory (1..4), 0 before anything is loaded."""
        s = self._set
        return 0 if s is None else len(s.secrets)

    @property
    def created_at(self) -> int | None:
        """Unix time at which the set was first created, None before loading."""
        s = self._set
        return None if s is None else s.created_at

    @property
    def rotated_at(self) -> int | None:
        """Unix time of the last rotation; None if never rotated or nothing is loaded."""
        s = self._set
        return None if s is None or s.rotated_at == 0 else s.rotated_at

    def exists(self) -> bool:
        """True if something (even a bad file or a dangling symlink) is at :attr:`path`."""
        return os.path.lexists(self._path)

    def fingerprint(self) -> str:
        """16 hex digits naming the loaded set, safe to log and compare between gateways.

        The first 64 bits of ``SHA-256(label || algorithm || 0x00 || g || secrets...)`` where
        label is ``b"ikeqcd secret-set fingerprint v1\\x00"`` and g the generation count in
        one octet. Stable across restarts, equal on an active/standby pair holding the same
        set, changed by every rotation; it does not reveal the secrets.

        Raises:
            SecretFileError: nothing is loaded.
        """
        s = self._need()
        h = hashlib.sha256(_FINGERPRINT_LABEL)
        h.update(s.algorithm.encode("ascii") + b"\x00" + bytes([len(s.secrets)]))
        for key in s.secrets:
            h.update(key)
        return h.hexdigest()[:16]

    def maker(self, *, token_len: int | None = None) -> TokenMaker:
        """A :class:`~ikeqcd.TokenMaker` over every generation, current first.

        Raises:
            SecretFileError: nothing is loaded.
            InvalidTokenLength: token_len outside 16..digest size.
        """
        s = self._need()
        return TokenMaker(list(s.secrets), algorithm=s.algorithm, token_len=token_len)

    def __repr__(self) -> str:
        s = self._set
        if s is None:
            return f"SecretStore({str(self._path)!r}, algorithm={self._requested!r}, not loaded)"
        return (
            f"SecretStore({str(self._path)!r}, algorithm={s.algorithm!r}, "
            f"generations={len(s.secrets)}, fingerprint={self.fingerprint()!r})"
        )

    def __reduce__(self) -> NoReturn:
        raise TypeError("SecretStore holds secret material and cannot be pickled")

    # ----------------------------------------------------------------- life cycle

    def load(self) -> None:
        """Read and validate the file; the in-memory set is replaced only on success.

        Raises:
            SecretFileError: the file is missing or refused (see the module docs).
        """
        s = self._read()
        if s is None:
            raise SecretFileError(
                f"{self._path}: no secret file; call create() or load_or_create() to make one",
                reason="missing",
                problem=f"{self._path}: no secret file",
            )
        with self._mutex:
            self._set = s

    def create(self) -> None:
        """Make a new 1-generation set of fresh random octets and persist it.

        Raises:
            SecretFileError: something already exists at :attr:`path` (it is never
                replaced), or the file cannot be written.
        """
        if self._requested is None:
            raise SecretFileError(
                f"{self._path}: create() needs an algorithm, not None", reason="algorithm"
            )
        if not self._create():
            raise SecretFileError(
                f"{self._path}: already exists and is never replaced; use load() instead",
                reason="exists",
                problem=f"{self._path}: already exists and is never replaced",
            )

    def load_or_create(self) -> bool:
        """Load the file, or create it if (and only if) nothing is at :attr:`path`.

        Returns:
            True if a new set was created, False if an existing one was loaded.

        Raises:
            SecretFileError: the existing file is refused (it is never replaced).
        """
        if not self.exists() and self._requested is not None and self._create():
            return True
        self.load()
        return False

    def rotate(self) -> None:
        """Make a new random current generation; older ones shift down, at most 4 are kept.

        The new set is on disk (atomically, durably) before it takes effect in memory.

        Raises:
            SecretFileError: nothing is loaded, or the file changed on disk since it was
                loaded (another process rotated or imported: call load() and retry), or the
                write failed.
        """
        with self._mutex:
            old = self._need()
            fresh = _random.token_bytes(SECRET_LEN[old.algorithm])
            keys = (fresh, *old.secrets)[:MAX_GENERATIONS]
            data = _encode(old.algorithm, keys, old.created_at, max(int(time.time()), 1))
            new = _decode(data, str(self._path))
            with self._write_lock():
                on_disk = self._read()
                if on_disk is None or not hmac.compare_digest(on_disk.checksum, old.checksum):
                    problem = (
                        f"{self._path}: changed on disk since it was loaded (another process "
                        f"rotated, imported or removed it)"
                    )
                    raise SecretFileError(
                        f"{problem}; call load() and retry", reason="changed", problem=problem
                    )
                self._commit(data)
            self._set = new

    def export_bytes(self) -> bytes:
        """The loaded set in the file format, for an active/standby pair (RFC 6290 §6).

        The blob is integrity-checked (SHA-256) but **not encrypted**: it is the secret
        itself. Move it only over a confidential, authenticated channel (e.g. scp/ssh),
        and give it to :meth:`import_bytes` or :meth:`import_to` on the standby.

        Raises:
            SecretFileError: nothing is loaded.
        """
        s = self._need()
        return _encode(s.algorithm, s.secrets, s.created_at, s.rotated_at)

    def import_bytes(self, blob: bytes, /, *, replace: bool = False) -> None:
        """Persist a blob from :meth:`export_bytes` at :attr:`path` and load it.

        The standby's file becomes byte-identical to the active's, so both derive the same
        tokens.

        Args:
            blob: the exported set.
            replace: overwrite an existing file (for a set the active rotated since). Without
                it an existing file is refused, never replaced.

        Raises:
            SecretFileError: the blob is corrupt or of another algorithm than requested, or
                a file exists and ``replace`` is False.
        """
        s = _decode(bytes(blob), "imported secret set")
        self._check_algorithm(s, "imported secret set")
        with self._mutex, self._write_lock():
            if not replace and self.exists():
                raise SecretFileError(
                    f"{self._path}: already exists; pass replace=True to overwrite it",
                    reason="exists",
                    problem=f"{self._path}: already exists",
                )
            self._commit(_encode(s.algorithm, s.secrets, s.created_at, s.rotated_at))
            self._set = s

    @classmethod
    def import_to(
        cls, path: str | os.PathLike[str], blob: bytes, /, *, replace: bool = False
    ) -> SecretStore:
        """Write an exported blob to ``path`` and return the loaded store (algorithm from the
        blob). See :meth:`import_bytes`."""
        store = cls(path, algorithm=None)
        store.import_bytes(blob, replace=replace)
        return store

    # ----------------------------------------------------------------- internals

    def _need(self) -> _SecretSet:
        s = self._set
        if s is None:
            raise SecretFileError(
                f"{self._path}: no secret set loaded; call load() or load_or_create() first",
                reason="not-loaded",
                problem=f"{self._path}: no secret set loaded",
            )
        return s

    def _check_algorithm(self, s: _SecretSet, where: str) -> None:
        if self._requested is not None and s.algorithm != self._requested:
            problem = f"{where}: holds a {s.algorithm} set but {self._requested} was requested"
            raise SecretFileError(
                f"{problem}; ask for algorithm={s.algorithm!r} (or None), or use another file",
                reason="algorithm",
                problem=problem,
            )

    def _create(self) -> bool:
        """Create under the write lock; False if something appeared at the path meanwhile."""
        assert self._requested is not None
        alg = self._requested
        now = int(time.time())
        data = _encode(alg, [_random.token_bytes(SECRET_LEN[alg])], now, 0)
        with self._mutex, self._write_lock():
            if self.exists():
                return False
            self._commit(data)
            self._set = _decode(data, str(self._path))
        return True

    def _read(self) -> _SecretSet | None:
        """Validated contents, or None if nothing is at the path."""
        p = self._path
        try:
            lst = os.lstat(p)
        except FileNotFoundError:
            return None
        except OSError as e:
            raise SecretFileError(f"{p}: cannot inspect ({e.strerror})", reason="io") from e
        if stat.S_ISDIR(lst.st_mode):
            raise SecretFileError(
                f"{p}: is a directory, not a secret file; give the path of the file inside "
                f"it (e.g. {p / 'qcd.secret'})",
                reason="directory",
            )
        if stat.S_ISLNK(lst.st_mode):
            try:
                target = f" to {os.readlink(p)}"
            except OSError:
                target = ""
            raise SecretFileError(
                f"{p}: is a symlink{target}, refused (a link can be pointed elsewhere); use "
                f"the real file's path, or move the file itself here",
                reason="symlink",
            )
        if not stat.S_ISREG(lst.st_mode):
            raise SecretFileError(
                f"{p}: not a regular file (a device, socket or FIFO); choose another path",
                reason="not-regular",
            )
        check_dir(p)
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(p, flags)
        except FileNotFoundError:
            return None
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise SecretFileError(f"{p}: is a symlink, refused", reason="symlink") from e
            raise SecretFileError(f"{p}: cannot open ({e.strerror})", reason="io") from e
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise SecretFileError(f"{p}: not a regular file", reason="not-regular")
            check_owner(p, st, "the file")
            if st.st_mode & 0o077:
                raise SecretFileError(
                    f"{p}: mode {stat.S_IMODE(st.st_mode):04o} lets group or others access the "
                    f"secret, refused; check it was not copied, then chmod 600 "
                    f"{shlex.quote(str(p))} (or rotate and replace the tokens of every peer)",
                    reason="mode",
                )
            chunks = []
            left = _MAX_LEN + 1
            while left > 0:
                chunk = os.read(fd, left)
                if not chunk:
                    break
                chunks.append(chunk)
                left -= len(chunk)
        finally:
            os.close(fd)
        s = _decode(b"".join(chunks), str(p))
        self._check_algorithm(s, str(p))
        return s

    @contextmanager
    def _write_lock(self) -> Iterator[None]:
        """Exclusive flock on ``.<name>.lock``; creates the directory (0700) if missing and
        removes temporary files that killed writers left behind."""
        d = self._path.parent
        if not d.exists():
            try:
                os.makedirs(d, mode=0o700)
                os.chmod(d, 0o700)
                _fsync_dir(d.parent)
            except FileExistsError:
                pass
            except OSError as e:
                raise SecretFileError(
                    f"{self._path}: cannot create its directory ({e.strerror})", reason="io"
                ) from e
        check_dir(self._path)
        lock = d / f".{self._path.name}.lock"
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(lock, flags, 0o600)
        except OSError as e:
            raise SecretFileError(
                f"{lock}: cannot open the lock file ({e.strerror})", reason="io"
            ) from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            prefix = f".{self._path.name}{_TMP_INFIX}"
            for entry in os.scandir(d):
                if entry.name.startswith(prefix) and entry.is_file(follow_symlinks=False):
                    os.unlink(entry.path)
            yield
        finally:
            os.close(fd)  # releases the flock

    def _commit(self, data: bytes) -> None:
        """Atomic durable replace of the file by ``data``; call under :meth:`_write_lock`."""
        d = self._path.parent
        tmp = d / f".{self._path.name}{_TMP_INFIX}{_random.token_hex(8)}"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(tmp, flags, 0o600)
            try:
                os.fchmod(fd, 0o600)  # the umask may have removed bits we need
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self._path)
            _fsync_dir(d)
        except OSError as e:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise SecretFileError(f"{self._path}: cannot write ({e.strerror})", reason="io") from e
