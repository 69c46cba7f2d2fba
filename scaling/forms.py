"""The admin's forms: write-only secrets, the number an action asks for, a pair's queues
(a Heroku pair needs one, a sandbox none), the schedule windows of a pair (no two may
overlap), and account choices that say when a secret is lost."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator

from scaling.fields import CANNOT_BE_READ, UnreadableSecret, stored_secret
from scaling.models import HEROKU_MAX_DYNOS_PER_APP, AwsAccount, HerokuAccount, ScalingPair
from scaling.schedules import first_overlap


RETYPE_SECRET = ("Type it again: it was not saved because of the other errors on this page, and a secret is "
                 "never sent back to the page.")


def secret_hint(value: str | UnreadableSecret) -> str:
    if isinstance(value, UnreadableSecret):
        return CANNOT_BE_READ
    return f"set, ending …{value[-4:]}" if len(value) >= 8 else ("set" if value else "not set")


def raise_floor(field: forms.IntegerField, floor: int, message: str | None = None) -> None:
    """``field`` refuses every value under ``floor`` with one message (its HTML ``min`` is
    left alone, so the server's messages for the other fields still come back with it)."""
    field.min_value = floor
    field.validators = [v for v in field.validators if not isinstance(v, MinValueValidator)]
    field.validators.append(MinValueValidator(floor, message=message) if message else MinValueValidator(floor))


class WriteOnlySecretsForm(forms.ModelForm):
    """Secret fields render empty; leaving one empty keeps the stored value. A stored value
    that cannot be read (its key is gone) must be entered again."""

    secret_fields: tuple[str, ...] = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in self.secret_fields:
            field = self.fields[name]
            field.widget = forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"})
            stored = stored_secret(self.instance, name) if self.instance.pk else ""
            if isinstance(stored, UnreadableSecret):
                field.error_messages["required"] = f"The stored secret {CANNOT_BE_READ}."
                field.help_text = (f"Currently: {CANNOT_BE_READ} (it was saved with an encryption key that is not in "
                                   f"DYNOSCALER_ENCRYPTION_KEYS). {field.help_text}")
            elif stored:
                field.required = False
                field.help_text = f"Currently {secret_hint(stored)}. Leave empty to keep it. {field.help_text}"

    def full_clean(self) -> None:
        super().full_clean()
        if not self.is_bound or not self.errors:
            return
        # A typed secret is never sent back to the page, so on a form that failed elsewhere its
        # field comes back empty: say so, or a second submit keeps the old one (or none) unnoticed.
        for name in self.secret_fields:
            typed = str(self.data.get(self.add_prefix(name)) or "").strip()
            if typed and name not in self.errors:
                self.add_error(name, ValidationError(RETYPE_SECRET, code="retype"))

    def _clean_secret(self, name: str) -> str:
        value = (self.cleaned_data.get(name) or "").strip()
        if not value and self.instance.pk:
            stored = stored_secret(self.instance, name)
            if isinstance(stored, UnreadableSecret):
                raise ValidationError(f"The stored secret {CANNOT_BE_READ}.", code="unreadable")
            return stored
        return value


class HerokuAccountForm(WriteOnlySecretsForm):
    secret_fields = ("api_token",)

    class Meta:
        model = HerokuAccount
        fields = ["description", "api_token"]

    def clean_api_token(self) -> str:
        return self._clean_secret("api_token")


class AwsAccountForm(WriteOnlySecretsForm):
    secret_fields = ("secret_access_key",)

    class Meta:
        model = AwsAccount
        fields = ["description", "use_default_chain", "access_key_id", "secret_access_key"]

    def clean_secret_access_key(self) -> str:
        if self.cleaned_data.get("use_default_chain"):
            return ""
        return self._clean_secret("secret_access_key")


# What the pair's controls were when the page was drawn. A pause, a person's hold, dry run or
# enabled may be changed by an action, a button or another operator while a page is open; a
# save from that page changes only the ones its operator changed, and leaves the rest as
# they are now (before, it wrote back what the page was drawn with: a pause, a hold or dry
# run set meanwhile was silently undone).
PAIR_CONTROLS = ("enabled", "dry_run", "paused_until")


def _control(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(microsecond=0).isoformat()  # the page shows seconds
    return value


class PairForm(forms.ModelForm):
    controls_loaded = forms.CharField(widget=forms.HiddenInput, required=False)

    class Meta:
        model = ScalingPair
        fields = "__all__"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk is not None:
            self.fields["controls_loaded"].initial = json.dumps(
                {name: _control(getattr(self.instance, name)) for name in PAIR_CONTROLS})

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        try:
            loaded = json.loads(cleaned.get("controls_loaded") or "{}")
        except ValueError:
            loaded = {}
        if self.instance.pk is None or not isinstance(loaded, dict):
            return cleaned
        kept = {name for name in PAIR_CONTROLS
                if name in cleaned and name in loaded and _control(cleaned[name]) == loaded[name]}
        for name in kept:
            cleaned[name] = getattr(self.instance, name)  # left alone on this page: as it is now
        self.__dict__["changed_data"] = [name for name in self.changed_data if name not in kept]  # nor logged as changed
        return cleaned


class NumberStepForm(forms.Form):
    """The intermediate page of an action that needs a number."""

    title = ""
    explanation = ""
    submit_label = ""
    number = forms.IntegerField()


class PauseForm(NumberStepForm):
    title = "Pause pairs"
    explanation = ("While paused, each cycle still reads the queue and the formation and records what it saw, "
                   "but changes nothing and moves no counter.")
    submit_label = "Pause"
    number = forms.IntegerField(label="Minutes", min_value=1, max_value=7 * 24 * 60, initial=60,
                                help_text="How long to pause, in minutes (at most a week).")


class ScaleNowForm(NumberStepForm):
    title = "Scale now"
    explanation = ("Sets the formation to this many dynos at once. It is recorded as a decision, and the policy then "
                   "holds off for the pair's manual hold so that it does not undo it.")
    submit_label = "Scale now"
    number = forms.IntegerField(label="Dynos", min_value=0, max_value=HEROKU_MAX_DYNOS_PER_APP,
                                help_text="The formation quantity to set (0–100).")


class AccountChoiceField(forms.ModelChoiceField):
    """An account as the pair form lists it, saying so when its secret cannot be read."""

    def label_from_instance(self, obj: Any) -> str:
        return f"{obj} (secret {CANNOT_BE_READ})" if obj.unreadable_secret_fields() else str(obj)


class QueueFormSet(forms.BaseInlineFormSet):
    """A Heroku + SQS pair reads at least one queue, and is told so by name when it has
    none; a sandbox pair has none to read (its queue is simulated), and is told so when
    it is given one."""

    def clean(self) -> None:
        super().clean()
        if any(form.errors for form in self.forms):
            return
        kept = [form for form in self.forms if form.cleaned_data and not form.cleaned_data.get("DELETE")]
        if self.instance.provider == ScalingPair.Provider.SANDBOX:
            if kept:
                raise forms.ValidationError("A sandbox pair reads no queue (its queue is simulated): delete these rows.",
                                            code="sandbox_queue")
            return
        if not kept:
            raise forms.ValidationError("A Heroku + SQS pair needs at least one SQS queue: fill in its name (or URL) "
                                        "and region below.", code="no_queue")


class ScheduleFormSet(forms.BaseInlineFormSet):
    def clean(self) -> None:
        super().clean()
        windows = []
        for form in self.forms:
            if not form.cleaned_data or form.cleaned_data.get("DELETE") or form.errors:
                continue
            windows.append(form.instance.as_window())
        overlap = first_overlap(windows)
        if overlap is not None:
            a, b = overlap
            raise forms.ValidationError(f"Schedule windows overlap: {a.describe()} and {b.describe()}. Make them disjoint.")
