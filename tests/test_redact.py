"""The one scrubbing point for what outside systems say: credentials never survive it, and
the text around them still reads as it did."""

from __future__ import annotations

import pytest

from scaling.adapters.errors import AdapterError, redact


@pytest.mark.parametrize(("said", "shown"), [
    ("refused (token=hk-abcdef123456)", "refused (token=****)"),
    ("bad credentials [password: s3cret-pw!] for user", "bad credentials [password: ****] for user"),
    ("Authorization: Bearer hk-abcdef123456", "Authorization: Bearer ****"),
    ("api_key=AKIAIOSFODNN7EXAMPLE, retry later", "api_key=****, retry later"),
    # A bracket inside the value, with none open before it, is the secret's: masked with it.
    ("password=ab)cdefgh", "password=****"),
    ("(password=ab)cd)", "(password=****)"),
    # The password in a URL's user part, with the user and host kept.
    ("Could not parse URL 'http://elastic:Pw-s3cret@es invalid:9200'",
     "Could not parse URL 'http://elastic:****@es invalid:9200'"),
    ("redis://:pw-0123@cache.internal:6379/0 refused", "redis://:****@cache.internal:6379/0 refused"),
    ("see https://example.com/a:b@c", "see https://example.com/a:b@c"),
])
def test_credentials_are_masked_and_the_brackets_around_them_kept(said: str, shown: str) -> None:
    assert redact(said) == shown


def test_a_known_secret_is_masked_wherever_it_appears() -> None:
    error = AdapterError("Heroku", "401 for token hk-0123456789abcdef (see hk-0123456789abcdef)",
                         permanent=True, secrets=["hk-0123456789abcdef"])
    assert "hk-0123456789abcdef" not in str(error)
    assert str(error).count("****") == 2
