"""The password policy and the hasher."""

from __future__ import annotations

from typing import Any

import argon2
import pytest

from chorus_api.domain.errors import WeakPasswordError
from chorus_api.domain.passwords import PasswordHasher, check_password_policy


@pytest.mark.parametrize(
    "password",
    ["Correct-Horse-42", "lowercase and spaces", "1234567890a", "ÉCOLE-secret", "passphrase!!"],
)
def test_accepts_long_mixed_passwords(password: str) -> None:
    check_password_policy(password=password, email="ada@example.com")


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("Short-1", "at least 10"),
        ("abcdefghijkl", "two of"),
        ("ABCDEFGHIJKL", "two of"),
        ("123456789012", "two of"),
        ("ada@example.com", "e-mail"),
        ("ADA.LOVELACE9", "e-mail"),
    ],
)
def test_refuses_weak_passwords(password: str, reason: str) -> None:
    with pytest.raises(WeakPasswordError) as caught:
        check_password_policy(
            password=password,
            email=password.lower() if "@" in password else "ada.lovelace9@example.com",
        )
    assert any(reason in r for r in caught.value.reasons), caught.value.reasons


async def test_hash_verifies_and_rejects() -> None:
    hasher = PasswordHasher(concurrency=2)
    digest = await hasher.hash("Correct-Horse-42")
    assert digest.startswith("$argon2id$")
    assert await hasher.verify("Correct-Horse-42", digest) == (True, None)
    assert (await hasher.verify("wrong-Horse-42", digest))[0] is False


async def test_an_unknown_email_costs_the_same_argon2_work_as_a_wrong_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The timing-attack guard, measured as work rather than wall time: every check runs
    # argon2 once, against a hash with the parameters (memory, passes, lanes, lengths) a
    # real account's hash has, so an unknown e-mail takes what a wrong password takes.
    verified: list[str] = []
    original = argon2.PasswordHasher.verify

    def counting(self: argon2.PasswordHasher, encoded: str | bytes, password: Any) -> bool:
        verified.append(encoded.decode() if isinstance(encoded, bytes) else encoded)
        return original(self, encoded, password)

    monkeypatch.setattr(argon2.PasswordHasher, "verify", counting)
    hasher = PasswordHasher(concurrency=2)
    account_hash = await hasher.hash("Correct-Horse-42")

    await hasher.verify("Wrong-Horse-42", account_hash)
    [known] = verified
    verified.clear()
    await hasher.verify_unknown_user("Wrong-Horse-42")
    [unknown] = verified

    assert known == account_hash
    assert unknown != account_hash
    assert argon2.extract_parameters(unknown) == argon2.extract_parameters(account_hash)
