"""specs/contract.md is the repository's copy of the contract the service implements.

The team's source of truth lives outside the repository (`shared/CONTRACT.md` beside the
clone, where the team keeps it); a clone must be complete, so the README links the copy. When
the original is there, the copy must be the same text.
"""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
COPY = REPO / "specs" / "contract.md"
ORIGINAL = REPO.parent / "shared" / "CONTRACT.md"


def test_the_copy_of_the_contract_is_the_contract() -> None:
    if not ORIGINAL.is_file():
        pytest.skip(f"no {ORIGINAL} beside this clone to compare with")
    assert COPY.read_text() == ORIGINAL.read_text(), (
        "specs/contract.md differs from shared/CONTRACT.md: copy the new contract in, then "
        "bring the service and specs/ up to it"
    )
