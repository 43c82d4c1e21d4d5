"""Secret handling: random tokens, digests, argon2id with rehash, key encryption."""

import pytest
from argon2 import PasswordHasher

from idp import security
from idp.config import generate_key_encryption_key


def test_random_tokens_carry_256_bits_and_prefix():
    token = security.random_token(prefix=security.REFRESH_TOKEN_PREFIX)
    assert token.startswith("idp_rt_")
    assert len(token) - len("idp_rt_") == 43  # 32 bytes, base64url without padding
    assert security.random_token() != security.random_token()


def test_digest_is_sha256_hex_and_compare_is_exact():
    assert security.digest("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert security.constant_time_equals("abc", "abc")
    assert not security.constant_time_equals("abc", "abd")


def test_password_hash_is_argon2id_and_verifies():
    hashed = security.hash_password("s3cret-passphrase")
    assert hashed.startswith("$argon2id$")
    assert security.verify_password(hashed, "s3cret-passphrase") == (True, None)
    assert security.verify_password(hashed, "wrong") == (False, None)
    assert security.verify_password(None, "anything") == (False, None)
    assert security.verify_password("not-a-hash", "anything") == (False, None)


def test_password_is_rehashed_when_parameters_change():
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash("s3cret-passphrase")
    ok, new_hash = security.verify_password(weak, "s3cret-passphrase")
    assert ok and new_hash and new_hash != weak
    assert security.verify_password(new_hash, "s3cret-passphrase") == (True, None)


def test_key_encryptor_first_key_encrypts_all_decrypt_and_rewrap_moves_to_newest():
    old, new = generate_key_encryption_key(), generate_key_encryption_key()
    ciphertext = security.KeyEncryptor([old]).encrypt(b"private")
    both = security.KeyEncryptor([new, old])
    assert both.decrypt(ciphertext) == b"private"
    rewrapped = both.rewrap(ciphertext)
    assert security.KeyEncryptor([new]).decrypt(rewrapped) == b"private"
    with pytest.raises(ValueError):
        security.KeyEncryptor([new]).decrypt(ciphertext)


def test_importing_the_cli_computes_no_password_hash():
    """The dummy hash (for unknown users) is made at first use, not at every process start."""
    import subprocess
    import sys

    probe = "import idp.cli, idp.security as s; print(s._dummy_hash.cache_info().currsize, s._hasher_for.cache_info().currsize)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0", "0"]
    security.verify_password(None, "anything")
    assert security._dummy_hash.cache_info().currsize >= 1
