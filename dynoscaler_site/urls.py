from django.contrib import admin
from django.urls import path
from django.views.generic import RedirectView

from scaling import metrics, views

admin.site.site_header = "DynoScaler"
admin.site.site_title = "DynoScaler"
admin.site.index_title = "Scaling pairs, credentials and decisions"

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("healthz", views.healthz),
    path("metrics", metrics.metrics, name="dynoscaler-metrics"),
    path("hooks/heroku/<uuid:token>/", views.heroku_webhook, name="dynoscaler-heroku-webhook"),
    path("admin/status/", admin.site.admin_view(views.status), name="dynoscaler-status"),
    path("admin/kill-switch/", admin.site.admin_view(views.kill_switch), name="dynoscaler-kill-switch"),
    path("admin/", admin.site.urls),
]
