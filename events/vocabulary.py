"""The closed sets of values events carry: severities, statuses, roles, kinds, channels.

Part of the log's language (`events.schema` re-exports them): a value added here is an additive
change; a value renamed or removed needs an upcaster (README, "Evolving an event").
"""

import enum


class Severity(enum.StrEnum):
    P0 = "P0"
    P1 = "P1"
    P2 = "P2"
    P3 = "P3"
    P4 = "P4"


# Most severe first.
SEVERITY_ORDER: tuple[Severity, ...] = tuple(Severity)


class Status(enum.StrEnum):
    """Public-facing status, as used in comms templates."""

    INVESTIGATING = "investigating"
    IDENTIFIED = "identified"
    MONITORING = "monitoring"
    RESOLVED = "resolved"


class Phase(enum.StrEnum):
    """Internal response phase."""

    DETECTED = "detected"
    TRIAGE = "triage"
    INVESTIGATION = "investigation"
    MITIGATION = "mitigation"
    VALIDATION = "validation"
    RESOLVED = "resolved"
    POSTMORTEM = "postmortem"


class Category(enum.StrEnum):
    INFRASTRUCTURE = "infrastructure"
    APPLICATION = "application"
    DATA = "data"
    SECURITY = "security"
    EXTERNAL = "external"


class Role(enum.StrEnum):
    COMMANDER = "commander"
    OPS = "ops"
    COMMS = "comms"
    SCRIBE = "scribe"
    TECH_LEAD = "tech_lead"
    LIAISON = "liaison"
    PRODUCT_OWNER = "product_owner"  # issue 13


class Audience(enum.StrEnum):
    INTERNAL = "internal"
    EXTERNAL = "external"
    STATUS_PAGE = "status_page"
    CUSTOMERS = "customers"
    EXECUTIVES = "executives"


class Channel(enum.StrEnum):
    """Where a message went (issue 13), next to whom it was for (`Audience`)."""

    SLACK = "slack"
    EMAIL = "email"
    STATUS_PAGE = "status_page"
    SUPPORT_PORTAL = "support_portal"
    SOCIAL = "social"
    WAR_ROOM = "war_room"
    OTHER = "other"


class CommsKind(enum.StrEnum):
    INITIAL = "initial"
    UPDATE = "update"
    RESOLUTION = "resolution"


class MitigationAction(enum.StrEnum):
    ROLLBACK = "rollback"
    SCALE = "scale"
    FAILOVER = "failover"
    RESTART = "restart"
    FEATURE_FLAG = "feature_flag"
    TRAFFIC_SHIFT = "traffic_shift"
    DLQ_FLUSH = "dlq_flush"
    OTHER = "other"
    # Added in issue 13: the runbooks' own words.
    CONFIG_ROLLBACK = "config_rollback"
    FIX_FORWARD = "fix_forward"
    CIRCUIT_BREAKER = "circuit_breaker"
    CACHE_CLEAR = "cache_clear"


class Outcome(enum.StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"


class NoteKind(enum.StrEnum):
    NOTE = "note"
    DECISION = "decision"
    ROOT_CAUSE = "root_cause"
    IMPACT = "impact"
    # Added in issue 13: the postmortem sections of the runbooks.
    LESSON = "lesson"
    WENT_WELL = "went_well"
    WENT_WRONG = "went_wrong"
    LUCKY = "lucky"
    FIVE_WHYS = "five_whys"
    PREVENTION = "prevention"


class PostmortemStatus(enum.StrEnum):
    DRAFT = "draft"
    IN_REVIEW = "in_review"
    FINAL = "final"


class ActionStatus(enum.StrEnum):
    TODO = "todo"
    IN_PROGRESS = "in_progress"
    DONE = "done"


class EvidenceKind(enum.StrEnum):
    TRACE = "trace"
    LOG_QUERY = "log_query"
    DASHBOARD = "dashboard"
    FILE = "file"
    # Added in issue 12: the links monitors send (runbook_url, generatorURL, PagerDuty links).
    METRICS = "metrics"
    RUNBOOK = "runbook"
    IMAGE = "image"
    LINK = "link"


class Source(enum.StrEnum):
    """The channel an event came through."""

    CLI = "cli"
    API = "api"
    WEB = "web"
    ALERTMANAGER = "alertmanager"
    PAGERDUTY = "pagerduty"
    NATS = "nats"
    SYNTHETIC = "synthetic"
    SYSTEM = "system"


# The sources that are monitors: an incident they declared is "opened by alerts".
MONITORS: frozenset[Source] = frozenset({Source.ALERTMANAGER, Source.PAGERDUTY})
