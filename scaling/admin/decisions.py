"""The decision history: read-only, filtered and searched without scanning millions of rows,
one line per decision (the whole reason a hover or a click away), and exported as CSV with
whatever the filters select."""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, StreamingHttpResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from django.core.paginator import Paginator

from scaling import selectors
from scaling.admin.base import CappedCountPaginator, GuardedAdmin, LookAheadPaginator
from scaling.models import CSV_COLUMNS, Decision, ScalingPair

SANDBOX_TAG = "background:#ffd966;padding:0 4px;font-weight:bold"


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


# A reason is shown whole on the decision's page; in the list, its start, on one line.
SHORT_REASON = 90
_RUN_HEAD = re.compile(r"^\d+ more cycles?[^;]*; the last: ")


def _count(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"


class _Echo:
    def write(self, value: str) -> str:
        return value


@admin.register(Decision)
class DecisionAdmin(GuardedAdmin):
    # What an operator reads first, left to right, one line a decision: every column is
    # drawn from the row itself, so a page costs no query per row.
    list_display = ["when", "pair_column", "outcome", "saw", "dynos", "short_reason"]
    list_display_links = ["when", "short_reason"]
    fieldsets = [
        (None, {"fields": ["recorded_at", "pair_link", "outcome", "full_reason", "error", "error_permanent", "dry_run"]}),
        ("What it saw", {"fields": ["visible_messages", "in_flight_messages", "delayed_messages", "queue_counts",
                                    "dynos_running", "dynos_starting", "quantity_before", "backlog_per_instance",
                                    "heroku_rate_limit_remaining"]}),
        ("What it decided and did", {"fields": ["policy", "desired_quantity", "applied_quantity"]}),
        ("A run of quiet cycles", {
            "fields": ["cycles", "first_cycle", "visible_min", "visible_max"],
            "description": "A row may stand for several cycles that saw and decided the same; the counts above are "
                           "the last one's.",
        }),
        ("Cost and audit trail", {"fields": ["duration_ms", "heroku_calls", "shipped_at"]}),
        ("Policy state", {"fields": ["state_before", "state_after"], "classes": ["collapse"]}),
    ]
    # Filters read the small pairs table or need no query at all: with millions of rows a
    # date hierarchy or a "related only" filter would scan the whole history on every page.
    list_filter = ["pair", "outcome", HasErrorFilter, "error_permanent", "dry_run", "created_at"]
    search_fields = ["pair_name", "app_name", "reason", "error"]
    show_full_result_count = False
    paginator = CappedCountPaginator
    list_max_show_all = 100  # never "show all" of a history: a search reports no count to judge it by
    list_per_page = 100

    @admin.display(description="when (UTC)", ordering="created_at")
    def when(self, decision: Decision) -> SafeString:
        # The year is on the hover and the decision's page: rows are kept for months, not years.
        return format_html('<span title="{}">{}</span>', f"{decision.created_at:%Y-%m-%d %H:%M:%S} UTC",
                           f"{decision.created_at:%m-%d %H:%M:%S}")

    def get_list_display(self, request: HttpRequest) -> list[Any]:
        # A sandbox pair's decisions are marked, as on the status page: nothing they say
        # happened on Heroku. Which pairs are sandboxes is read once a page, from the small
        # pairs table, not joined into the history's query.
        sandbox = set(ScalingPair.objects.filter(provider=ScalingPair.Provider.SANDBOX).values_list("pk", flat=True))

        @admin.display(description="pair", ordering="pair_name")
        def pair_column(decision: Decision) -> SafeString:
            return _pair_cell(decision, sandbox=decision.pair_id in sandbox)

        return [pair_column if name == "pair_column" else name for name in self.list_display]

    @admin.display(description="pair", ordering="pair_name")
    def pair_column(self, decision: Decision) -> SafeString:
        """The column as declared (what ``get_list_display`` replaces with the page's own)."""
        return _pair_cell(decision, sandbox=False)

    @admin.display(description="visible / in flight")
    def saw(self, decision: Decision) -> str:
        visible = _count(decision.visible_messages)
        if decision.cycles > 1 and None not in (decision.visible_min, decision.visible_max) \
                and decision.visible_min != decision.visible_max:
            visible = f"{_count(decision.visible_min)}–{_count(decision.visible_max)}"
        return f"{visible} / {_count(decision.in_flight_messages)}"

    @admin.display(description="formation → desired (→ applied)")
    def dynos(self, decision: Decision) -> str:
        if decision.quantity_before is None and decision.desired_quantity is None:
            return "—"
        shown = f"{_count(decision.quantity_before)} → {_count(decision.desired_quantity)}"
        return shown + (f" (→ {decision.applied_quantity})" if decision.applied_quantity is not None else "")

    @admin.display(description="reason (hover for all of it, click for the decision)")
    def short_reason(self, decision: Decision) -> SafeString:
        whole = decision.reason + (f"\n\nerror: {decision.error}" if decision.error else "")
        text = decision.reason + (f" [{decision.error}]" if decision.error else "")
        run = ""
        if decision.first_cycle_at is not None and _RUN_HEAD.match(text):
            # A run's reason leads with its span and counts in words: say them in short, then what it decided
            # (a run of one cycle too, so that every run row in the list reads the same way).
            n = decision.cycles
            span = f"{decision.first_cycle_at:%H:%M:%S}" + (f"–{decision.created_at:%H:%M:%S}" if n > 1 else "")
            run = f"{n} cycle{'s' if n != 1 else ''} {span}"
            text = _RUN_HEAD.sub("", text)
        short = text if len(text) <= SHORT_REASON else text[:SHORT_REASON - 1].rstrip() + "…"
        if run:
            return format_html('<span title="{}"><strong class="decision-run">{}</strong> {}</span>', whole, run, short)
        return format_html('<span title="{}">{}</span>', whole, short)

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        # A single cycle is no run: leave that section out.
        return [f for f in self.fieldsets if obj is None or obj.cycles > 1 or f[0] != "A run of quiet cycles"]

    @admin.display(description="when (UTC)")
    def recorded_at(self, decision: Decision) -> str:
        return f"{decision.created_at:%Y-%m-%d %H:%M:%S}"

    @admin.display(description="first cycle (UTC)")
    def first_cycle(self, decision: Decision) -> str:
        return f"{decision.first_cycle_at:%Y-%m-%d %H:%M:%S}" if decision.first_cycle_at else "—"

    @admin.display(description="reason")
    def full_reason(self, decision: Decision) -> SafeString:
        return format_html('<div class="decision-reason">{}</div>', decision.reason)

    @admin.display(description="pair")
    def pair_link(self, decision: Decision) -> SafeString:
        where = f"{decision.app_name}/{decision.process_type}"
        if decision.pair_id is None:
            return format_html("{} ({}; the pair was deleted)", decision.pair_name, where)
        url = reverse("admin:scaling_scalingpair_change", args=[decision.pair_id])
        sandbox = ScalingPair.objects.filter(pk=decision.pair_id, provider=ScalingPair.Provider.SANDBOX).exists()
        tag = format_html(' <span style="{}">SANDBOX</span> (simulated: no Heroku app was read or changed)',
                          SANDBOX_TAG) if sandbox else ""
        return format_html('<a href="{}">{}</a> ({}){}', url, decision.pair_name, where, tag)

    @admin.display(description="per queue")
    def queue_counts(self, decision: Decision) -> str:
        return "; ".join(f"{q.get('queue')} ({q.get('region')}): {_count(q.get('visible'))} visible, "
                         f"{_count(q.get('in_flight'))} in flight, {_count(q.get('delayed'))} delayed"
                         for q in decision.queues or []) or "—"

    def get_paginator(self, request: HttpRequest, queryset: Any, per_page: int, orphans: int = 0,
                      allow_empty_first_page: bool = True) -> Paginator:
        # A text search counts nothing (pages say only whether another follows): even a
        # capped count of a common word walks much of a long history.
        if request.GET.get("q"):
            try:
                number = int(request.GET.get("p", "1"))
            except ValueError:
                number = 1
            return LookAheadPaginator(queryset, per_page, orphans, allow_empty_first_page, page_number=number)
        return CappedCountPaginator(queryset, per_page, orphans, allow_empty_first_page)

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        term = request.GET.get("q", "")
        if not term or "\x00" in term:
            return super().changelist_view(request, extra_context)
        matches, _ = self.get_search_results(request, Decision.objects.all(), term)
        with selectors.search_plan(matches):
            response = super().changelist_view(request, extra_context)
            if hasattr(response, "render"):
                response.render()  # the page's queries run under the plan chosen for the search
        return response

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


def _pair_cell(decision: Decision, *, sandbox: bool) -> SafeString:
    tag = format_html(' <span style="{}">SANDBOX</span>', SANDBOX_TAG) if sandbox else ""
    return format_html('<span title="{} ({}/{})">{}</span>{}', decision.pair_name, decision.app_name,
                       decision.process_type, decision.pair_name, tag)
