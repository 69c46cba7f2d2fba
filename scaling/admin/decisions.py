"""The decision history: read-only, filtered and searched without scanning millions of rows,
and exported as CSV with whatever the filters select."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, StreamingHttpResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone

from scaling.admin.base import CappedCountPaginator, GuardedAdmin
from scaling.models import CSV_COLUMNS, Decision


class HasErrorFilter(admin.SimpleListFilter):
    title = "error"
    parameter_name = "has_error"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "with an error"), ("no", "without")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Decision]) -> QuerySet[Decision]:
        if self.value() == "yes":
            return queryset.exclude(error="")
        if self.value() == "no":
            return queryset.filter(error="")
        return queryset




class _Echo:
    def write(self, value: str) -> str:
        return value


@admin.register(Decision)
class DecisionAdmin(GuardedAdmin):
    list_display = [
        "created_at", "pair_name", "outcome", "visible_messages", "dynos_running",
        "quantity_before", "desired_quantity", "applied_quantity", "reason", "dry_run", "duration_ms",
    ]
    # Filters read the small pairs table or need no query at all: with millions of rows a
    # date hierarchy or a "related only" filter would scan the whole history on every page.
    list_filter = ["pair", "outcome", HasErrorFilter, "error_permanent", "dry_run", "created_at"]
    search_fields = ["pair_name", "app_name", "reason", "error"]
    show_full_result_count = False
    paginator = CappedCountPaginator
    list_per_page = 100

    def get_urls(self) -> list[URLPattern]:
        return [path("export.csv", self.admin_site.admin_view(self.export_csv), name="scaling_decision_export")] + super().get_urls()

    def export_csv(self, request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
        """Every decision the changelist's current filters and search select, streamed."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            changelist = self.get_changelist_instance(request)
        except IncorrectLookupParameters:  # the message says which filter; the list shows them all
            self.message_user(request, "Nothing was exported.", messages.ERROR)
            return HttpResponseRedirect(reverse("admin:scaling_decision_changelist") + "?e=1")
        queryset = changelist.get_queryset(request).order_by("created_at", "id")
        writer = csv.writer(_Echo())

        def rows() -> Iterator[str]:
            yield writer.writerow(CSV_COLUMNS)
            for values in queryset.values_list(*CSV_COLUMNS).iterator(chunk_size=2000):
                yield writer.writerow(values)

        response = StreamingHttpResponse(rows(), content_type="text/csv")
        response["Content-Disposition"] = f'attachment; filename="dynoscaler-decisions-{timezone.now():%Y%m%d-%H%M}.csv"'
        return response

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
