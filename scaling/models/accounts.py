"""Credentials: a Heroku authorization and an AWS key pair, shared by the pairs that use them."""

from __future__ import annotations

from datetime import datetime

from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models

from scaling.fields import EncryptedSecretsMixin, EncryptedTextField, stored_secret

UNIQUE_DESCRIPTION = ("Another %(model_name)s already has this description; give this one its own, since "
                      "pairs and the pairs file name accounts by their description.")


class HerokuAccount(EncryptedSecretsMixin):
    description = models.CharField(
        max_length=200,
        unique=True,
        error_messages={"unique": UNIQUE_DESCRIPTION},
        help_text="What this authorization is, e.g. the name given to it in Heroku's "
        "Account → Applications page. Unique: pairs and the pairs file name their account by it.",
    )
    api_token = EncryptedTextField(
        "API token",
        help_text="A Heroku OAuth authorization token with permission to scale the apps. "
        "Write-only: it is never shown again after saving.",
    )
    managed_by_env = models.BooleanField(
        default=False,
        editable=False,
        help_text="Created from MY_HEROKU_AUTH_TOKEN; restarting with other values updates it.",
    )
    rate_limited_until = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text="Heroku answered 429; no call is made for this account until then (UTC).",
    )
    # The account's API pool as Heroku last reported it (RateLimit-Remaining), and when.
    pool_remaining = models.PositiveIntegerField(null=True, blank=True, editable=False)
    pool_seen_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "Heroku account"

    def __str__(self) -> str:
        return self.description

    def clean(self) -> None:
        problem = secret_problem(stored_secret(self, "api_token"))
        if problem:
            raise ValidationError({"api_token": f"A Heroku API token {problem}."})

    def backing_off_until(self, now: datetime) -> datetime | None:
        """When this account's pairs may call Heroku again, if they must wait now."""
        if self.rate_limited_until is not None and self.rate_limited_until > now:
            return self.rate_limited_until
        return None


class AwsAccount(EncryptedSecretsMixin):
    description = models.CharField(
        max_length=200,
        unique=True,
        error_messages={"unique": UNIQUE_DESCRIPTION},
        help_text="What these credentials are for. Unique: pairs and the pairs file name their account by it.",
    )
    use_default_chain = models.BooleanField(
        "use the default AWS credential chain",
        default=False,
        help_text="Let boto3 find credentials itself (IAM role, AWS_PROFILE, AWS_ACCESS_KEY_ID "
        "in the environment). Leave the key fields empty when ticked.",
    )
    access_key_id = models.CharField(
        "access key ID",
        max_length=128,
        blank=True,
        validators=[RegexValidator(r"^[A-Z0-9]{16,128}$", "An access key ID is 16–128 capital letters and digits.")],
        help_text="aws_access_key_id, e.g. AKIA…",
    )
    secret_access_key = EncryptedTextField(
        blank=True,
        help_text="aws_secret_access_key. Write-only: it is never shown again after saving.",
    )
    managed_by_env = models.BooleanField(default=False, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "AWS account"

    def __str__(self) -> str:
        return self.description

    def clean(self) -> None:
        secret = stored_secret(self, "secret_access_key")  # never raises, even when it cannot be read
        if self.use_default_chain:
            if self.access_key_id or secret:
                raise ValidationError(
                    {"use_default_chain": "Either use the default chain or give a key pair, not both."}
                )
            return
        errors = {}
        problem = secret_problem(secret)
        if problem:
            errors["secret_access_key"] = f"A secret access key {problem}."
        if not self.access_key_id:
            errors["access_key_id"] = "Required unless the default credential chain is used."
        if not secret:
            errors["secret_access_key"] = "Required unless the default credential chain is used."
        if errors:
            raise ValidationError(errors)


def secret_problem(value: object) -> str | None:
    """What is wrong with a pasted secret (never quoting it), or None."""
    if isinstance(value, str) and any(c.isspace() for c in value.strip()):
        return "has no spaces or line breaks inside; paste it again, whole"
    return None


def accounts_with_unreadable_secrets() -> list[HerokuAccount | AwsAccount]:
    """Accounts holding a secret that no configured key decrypts (the key was lost or changed)."""
    accounts: list[HerokuAccount | AwsAccount] = [*HerokuAccount.objects.order_by("pk"), *AwsAccount.objects.order_by("pk")]
    return [a for a in accounts if a.unreadable_secret_fields()]
