"""The public surface is exactly what the README documents; signatures keep their markers."""

from __future__ import annotations

import inspect

import ikeqcd
import pytest
from ikeqcd import errors

DOCUMENTED = {
    "ALGORITHMS", "CheckLiveness", "FailureDetector", "IkeQcdError", "MakerPolicy",
    "PeerRestarted", "RateLimiter", "Reason", "RestartCancelled", "SaTable", "SecretStore",
    "TakerPolicy", "TokenCheck", "TokenMaker", "TokenResponder", "Verdict", "VerdictKind",
    "__version__", "errors", "net", "pcap", "wire",
}


def test_all_is_the_documented_set() -> None:
    assert set(ikeqcd.__all__) == DOCUMENTED
    for name in ikeqcd.__all__:
        assert hasattr(ikeqcd, name), name


def test_native_classes_are_exposed_under_public_names() -> None:
    for cls in (ikeqcd.TokenMaker, ikeqcd.SaTable, ikeqcd.RateLimiter):
        assert cls.__module__ == "ikeqcd._core"


def test_positional_only_and_keyword_only_markers() -> None:
    m = ikeqcd.TokenMaker(bytes(32))
    with pytest.raises(TypeError):
        ikeqcd.TokenMaker(secrets=bytes(32))  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        ikeqcd.TokenMaker(bytes(32), "hmac-sha256")  # type: ignore[misc]
    with pytest.raises(TypeError):
        m.token(spi_i=1, spi_r=2)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        m.token(1, 2, 0)  # type: ignore[misc]


def test_error_hierarchy() -> None:
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, errors.IkeQcdError)
    for cls in (errors.InvalidArgument, errors.MalformedMessage, errors.InvalidSecret,
                errors.InvalidArray, errors.InvalidPolicy):
        assert issubclass(cls, ValueError)
    assert not issubclass(errors.SecretFileError, ValueError)


def test_every_public_callable_is_documented() -> None:
    for name in ikeqcd.__all__:
        obj = getattr(ikeqcd, name)
        if inspect.isclass(obj) or inspect.isfunction(obj) or inspect.ismodule(obj):
            assert obj.__doc__, f"{name} has no docstring"
