from django.contrib import admin
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.urls import path
from django.views.generic import RedirectView

admin.site.site_header = "DynoScaler"
admin.site.site_title = "DynoScaler"
admin.site.index_title = "Scaling pairs, credentials and decisions"


def healthz(request: HttpRequest) -> JsonResponse:
    """The web dyno's health: it answers and its database does."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:  # any database failure makes the dyno unhealthy
        return JsonResponse({"ok": False, "database": type(exc).__name__}, status=503)
    return JsonResponse({"ok": True})


urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("healthz", healthz),
    path("admin/", admin.site.urls),
]
