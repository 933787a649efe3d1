"""Print the bad-input table of SECURITY.md from the cases of ``tests/test_bad_input.py``.

Run: ``.venv/bin/python scripts/bad_input_table.py > /tmp/table.md`` (the test module holds the
data; ``pytest tests/test_bad_input.py`` checks every row).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def load_cases() -> object:
    spec = importlib.util.spec_from_file_location("bad_input", ROOT / "tests" / "test_bad_input.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bad_input"] = mod  # dataclasses look their module up while the class is built
    spec.loader.exec_module(mod)
    return mod


def table() -> str:
    mod = load_cases()
    rows = ["| call | bad input | documented outcome |", "|---|---|---|"]
    for c in mod.CASES:  # type: ignore[attr-defined]
        outcome = f"`{c.raises.__name__}`" if c.raises is not None else f"returns {c.result}"
        rows.append(f"| `{c.api}` | {c.bad} | {outcome} |")
    rows += [
        "",
        (
            "In the command lines, GOOD is a valid secret file, GARBAGE a file of 200 octets "
            "that is neither a secret file nor a pcap, MISSING a path where nothing is."
        ),
        "",
        "| command line | bad input | exit code |",
        "|---|---|---|",
    ]
    for c in mod.CLI_CASES:  # type: ignore[attr-defined]
        argv = " ".join(c.argv) or "(none)"
        rows.append(f"| `ikeqcd {argv}` | {c.bad} | {c.code} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(table())
