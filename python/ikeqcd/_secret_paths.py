"""Where a secret file may live: the checks on its directory and owner, and advice that is
right for this path (never a chmod of a shared or system directory)."""

from __future__ import annotations

import os
import shlex
import stat
from pathlib import Path

from ikeqcd.errors import SecretFileError

__all__ = ["check_dir", "check_owner", "private_dir_hint"]


# Directories whose mode is the system's business: never advise changing it.
_SYSTEM_DIRS = frozenset(
    ("/", "/tmp", "/var/tmp", "/dev/shm", "/run", "/run/user", "/run/lock", "/var", "/var/lib",
     "/var/run", "/etc", "/home", "/usr", "/opt", "/srv", "/mnt", "/media", "/dev")
)


def private_dir_hint() -> str:
    """Where to keep a secret file instead, as a command to run (for error messages)."""
    where = "/var/lib/ikeqcd" if os.geteuid() == 0 else "~/.config/ikeqcd"
    return f"mkdir -m 700 {where} and keep the secret file there"


def check_dir(file: Path) -> None:
    directory = file.parent
    try:
        st = os.stat(directory)
    except FileNotFoundError:
        raise SecretFileError(
            f"{file}: its directory {directory} does not exist; create a private one "
            f"(mkdir -m 700 {shlex.quote(str(directory))}) or choose another path",
            reason="parent",
        ) from None
    except OSError as e:
        raise SecretFileError(
            f"{file}: cannot inspect its directory ({e.strerror})", reason="parent"
        ) from e
    if not stat.S_ISDIR(st.st_mode):
        raise SecretFileError(f"{file}: {directory} is not a directory", reason="parent")
    check_owner(file, st, f"its directory {directory}")
    if st.st_mode & 0o022:
        who = "group and others" if st.st_mode & 0o022 == 0o022 else (
            "others" if st.st_mode & 0o002 else "its group")
        shared = (
            st.st_mode & stat.S_ISVTX
            or str(directory) in _SYSTEM_DIRS
            or st.st_uid != os.geteuid()
        )
        if shared:
            kind = "a shared directory (sticky bit)" if st.st_mode & stat.S_ISVTX else (
                "a system directory" if str(directory) in _SYSTEM_DIRS else "not yours")
            fix = f"it is {kind}, leave its mode alone: {private_dir_hint()}"
        else:
            fix = (
                f"run chmod go-w {shlex.quote(str(directory))} (or keep the file in a private "
                f"directory)"
            )
        raise SecretFileError(
            f"{file}: its directory {directory} is writable by {who} "
            f"(mode {stat.S_IMODE(st.st_mode):04o}), so another user could swap the secret "
            f"file; {fix}",
            reason="parent",
        )


def check_owner(file: Path, st: os.stat_result, what: str) -> None:
    me = os.geteuid()
    if st.st_uid not in (me, 0):
        if what == "the file":
            fix = (
                f"run as the user that owns it (uid {st.st_uid}), or, if it is meant to be this "
                f"user's: chown {me} {shlex.quote(str(file))}"
            )
        else:
            fix = f"use a directory this user owns: {private_dir_hint()}"
        raise SecretFileError(
            f"{file}: {what} is owned by uid {st.st_uid}, not by this process (uid {me}) or "
            f"root; {fix}",
            reason="owner",
        )
