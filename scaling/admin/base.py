"""What every model admin of the site shares: bad request parameters answered with a
message, never a 500; and a paginator that never counts a whole big table."""

from __future__ import annotations

from functools import cached_property
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.auth import admin as auth_admin
from django.contrib.auth.models import Group, User
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.core.paginator import Page, Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect

from scaling.forms import raise_floor


def _lookup_problem(exc: Exception) -> str:
    """What is wrong with a changelist's filters, search, sorting or page, in words."""
    cause = exc.args[0] if exc.args else exc.__cause__
    if isinstance(cause, ValidationError):
        return " ".join(cause.messages)
    return str(cause) if cause else "a filter, search, sorting or page number in the address is not valid"


class GuardedAdmin(admin.ModelAdmin):
    """A model admin that answers bad request parameters with a message, never a 500.

    Django's admin trusts a few parameters that only its own pages normally send (the
    selected rows of an action, ``_to_field``) and passes filter and search values to the
    database as they come, where PostgreSQL refuses a NUL byte. Every model admin on the
    site derives from this, Django's own user and group admins included.
    """

    def formfield_for_dbfield(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        field = super().formfield_for_dbfield(db_field, request, **kwargs)
        floors = [v.limit_value for v in db_field.validators if isinstance(v, MinValueValidator)]
        if isinstance(field, forms.IntegerField) and floors:
            # The form checks a number against the model's own lowest value, so -5 and 0 get
            # the same message as 1 would (a positive field's form stops at 0 otherwise).
            floor, message = self.number_floor(db_field.name, max(floors))
            raise_floor(field, floor, message)
        return field

    def number_floor(self, name: str, floor: int) -> tuple[int, str | None]:
        """The lowest value of a number field, and its message (None: Django's own)."""
        return floor, None

    def get_changelist_instance(self, request: HttpRequest) -> Any:
        # Django turns IncorrectLookupParameters into a redirect to the plain list (?e=1);
        # the message says why the filters were dropped.
        try:
            if any("\x00" in text for key, values in request.GET.lists() for text in (key, *values)):
                raise IncorrectLookupParameters("a filter or search contains a NUL character, which nothing can match")
            return super().get_changelist_instance(request)
        except IncorrectLookupParameters as exc:
            self.message_user(request, f"These filters cannot be applied: {_lookup_problem(exc)}", messages.ERROR)
            raise

    def get_object(self, request: HttpRequest, object_id: str, from_field: str | None = None) -> Any:
        return super().get_object(request, object_id, from_field or None)  # "?_to_field=" means none

    def response_action(self, request: HttpRequest, queryset: QuerySet[Any], *args: Any, **kwargs: Any) -> HttpResponse | None:
        selected = request.POST.getlist(helpers.ACTION_CHECKBOX_NAME)
        try:
            for pk in selected:
                self.model._meta.pk.to_python(pk)
        except ValidationError:
            self.message_user(request, "The selection names rows that do not exist; nothing was done.", messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())
        return super().response_action(request, queryset, *args, **kwargs)


class CappedCountPaginator(Paginator):
    """Counts at most ``cap`` rows, so a page of millions of decisions costs no full COUNT(*).
    The count drops the list's ordering: counting needs none, and an ordered count makes the
    database walk the whole history in date order instead of using the search indexes."""

    CAP = 10_000

    def __init__(self, *args: Any, cap: int = CAP, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cap = cap

    @cached_property
    def count(self) -> int:
        return int(self.object_list.order_by()[: self.cap + 1].count())  # type: ignore[attr-defined]


class LookAheadPaginator(Paginator):
    """Counts nothing: fetches the page asked for and one row more, which says whether another
    page follows. For a text search of a long history, where even a capped count walks far."""

    def __init__(self, *args: Any, page_number: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.page_number = max(1, page_number)
        self._rows: list[Any] | None = None

    def _fetched(self) -> list[Any]:
        if self._rows is None:
            start = (self.page_number - 1) * self.per_page
            self._rows = list(self.object_list[start:start + self.per_page + 1])
        return self._rows

    @cached_property
    def count(self) -> int:
        return (self.page_number - 1) * self.per_page + len(self._fetched())

    def page(self, number: Any) -> Any:
        number = self.validate_number(number)
        if number == self.page_number:
            return Page(self._fetched()[: self.per_page], number, self)
        return super().page(number)


# Django's own admins for people, on the same footing as ours.
for _model, _admin_class in ((User, auth_admin.UserAdmin), (Group, auth_admin.GroupAdmin)):
    if admin.site.is_registered(_model):
        admin.site.unregister(_model)
    admin.site.register(_model, type(_admin_class.__name__, (GuardedAdmin, _admin_class), {}))
