from django.apps import AppConfig


class ScalingConfig(AppConfig):
    name = "scaling"
    verbose_name = "DynoScaler"
    default_auto_field = "django.db.models.BigAutoField"
