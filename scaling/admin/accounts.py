"""Credentials: write-only secrets, shown only as "set, ending …abcd"."""

from __future__ import annotations

from django.contrib import admin

from scaling.admin.base import GuardedAdmin
from scaling.fields import stored_secret
from scaling.forms import AwsAccountForm, HerokuAccountForm, secret_hint
from scaling.models import AwsAccount, HerokuAccount


@admin.register(HerokuAccount)
class HerokuAccountAdmin(GuardedAdmin):
    form = HerokuAccountForm
    list_display = ["description", "token_hint", "managed_by_env", "rate_limited_until", "updated_at"]
    search_fields = ["description"]
    readonly_fields = ["managed_by_env", "rate_limited_until"]

    @admin.display(description="token")
    def token_hint(self, obj: HerokuAccount) -> str:
        return secret_hint(stored_secret(obj, "api_token"))


@admin.register(AwsAccount)
class AwsAccountAdmin(GuardedAdmin):
    form = AwsAccountForm
    list_display = ["description", "use_default_chain", "access_key_id", "secret_hint_display", "managed_by_env"]
    list_filter = ["use_default_chain", "managed_by_env"]
    search_fields = ["description", "access_key_id"]

    @admin.display(description="secret")
    def secret_hint_display(self, obj: AwsAccount) -> str:
        return "default chain" if obj.use_default_chain else secret_hint(stored_secret(obj, "secret_access_key"))
