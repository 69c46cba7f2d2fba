"""DynoScaler's tables, one module per concern; import them from here."""

from scaling.models.accounts import AwsAccount, HerokuAccount, accounts_with_unreadable_secrets
from scaling.models.alerts import AlertChannel, AlertDelivery, AlertProblem, ProblemKind
from scaling.models.coordination import Heartbeat, KillSwitch, Lease
from scaling.models.decisions import COLUMNS, CSV_COLUMNS, Decision, PairSample
from scaling.models.formations import FormationState, HerokuApp, WebhookEvent
from scaling.models.pairs import PairQueue, PairSchedule, SandboxState, ScalingPair, ScalingPairQuerySet
from scaling.validators import HEROKU_MAX_DYNOS_PER_APP

__all__ = [
    "accounts_with_unreadable_secrets",
    "AlertChannel", "AlertDelivery", "AlertProblem", "ProblemKind",
    "AwsAccount", "HerokuAccount", "Heartbeat", "KillSwitch", "Lease", "COLUMNS", "CSV_COLUMNS", "Decision", "PairQueue",
    "PairSchedule", "PairSample", "FormationState", "HerokuApp", "WebhookEvent", "SandboxState", "ScalingPair", "ScalingPairQuerySet", "HEROKU_MAX_DYNOS_PER_APP",
]
