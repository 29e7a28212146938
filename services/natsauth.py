"""Who may talk to the embedded nats-server when tokens are on (DESIGN section 10).

- The service connects as `incidents` with a password generated once into
  `$INCIDENTS_DATA_DIR/nats-credentials.toml` (mode 0600). It is the one unrestricted user:
  nobody else may publish on the stream's subjects or call `$JS.API`.
- Each producer entry of the tokens file with `nats = true` is a NATS user named like the
  entry. Its password is derived from the credentials file's `producer_key` and the entry's
  token hash, so the tokens file still holds no secret and re-issuing the token changes the
  password. It may publish only on `intake.<name>.>` and subscribe only to its own inboxes,
  `_INBOX_<name>.>` (its replies; its client connects with that inbox prefix): the subject of
  everything it sends names it, and the server enforces that. The shared `_INBOX.>`, where
  any other client's replies go (JetStream deliveries of stored events among them), is out of
  its reach, and so is every other producer's inbox.
- The service's own inboxes (request replies, JetStream deliveries) use the prefix
  `_INCIDENTS_INBOX`, out of the producers' sight.
- The service answers a producer only in its own inbox (`answerable`): the server does not
  check reply subjects, and an answer is a publish by the one unrestricted user.

deploy/nats/nats.conf gives the users of the compose cluster the same rights.

Without tokens there is no NATS authentication: the embedded server listens on loopback only.
"""

import contextlib
import hashlib
import hmac
import os
import secrets
import tomllib
from pathlib import Path
from typing import Final

import msgspec

from services.auth import NATS_SERVICE_USER, Tokens
from services.config import ConfigError
from services.natsserver import NatsAuth, NatsUser

CREDENTIALS_FILE: Final = "nats-credentials.toml"
# The service's inbox prefix: its requests' replies and JetStream deliveries (stored events)
# go there, where no producer may subscribe.
SERVICE_INBOX: Final = "_INCIDENTS_INBOX"
# Per-producer intake subjects: `intake.<name>.events`, `intake.<name>.alertmanager`.
PRODUCER_EVENTS: Final = "intake.*.events"
PRODUCER_ALERTMANAGER: Final = "intake.*.alertmanager"


class ServiceCredentials(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    user: str
    password: str
    producer_key: str

    @classmethod
    def load_or_create(cls, data_dir: Path) -> "ServiceCredentials":
        """The data dir's credentials, generated (mode 0600) on first use."""
        path = data_dir / CREDENTIALS_FILE
        if not path.exists():
            _create(path)
        try:
            if path.stat().st_mode & 0o077:
                os.chmod(path, 0o600)  # it holds the keys to the log: owner only
            return msgspec.convert(tomllib.loads(path.read_text()), cls)
        except (tomllib.TOMLDecodeError, msgspec.ValidationError) as exc:
            raise ConfigError(f"NATS credentials {path}: {exc}") from exc

    def producer_password(self, name: str, token_sha256: str) -> str:
        message = f"nats-producer\0{name}\0{token_sha256.lower()}".encode()
        return hmac.new(self.producer_key.encode(), message, hashlib.sha256).hexdigest()

    def producer(self, name: str, token_sha256: str) -> NatsUser:
        return NatsUser(
            name=name,
            password=self.producer_password(name, token_sha256),
            publish=(f"intake.{name}.>",),
            subscribe=(f"{producer_inbox(name)}.>",),
        )


def producer_inbox(name: str) -> str:
    """The inbox prefix producer `name` connects with (nats-py `inbox_prefix`, the nats CLI's
    `--inbox-prefix`): the only subjects it may subscribe to start with it."""
    return f"_INBOX_{name}"


def _create(path: Path) -> None:
    """Write new credentials to a private temporary file, then link it into place: readers
    never see half a file, and of two racing creators the first one wins."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = (
        "# NATS credentials of `incidents serve` (embedded nats-server with tokens on).\n"
        "# Keep private: the service user may do anything to the log.\n"
        f'user = "{NATS_SERVICE_USER}"\n'
        f'password = "{secrets.token_hex(24)}"\n'
        f'producer_key = "{secrets.token_hex(32)}"\n'
    )
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def embedded_auth(credentials: ServiceCredentials, tokens: Tokens) -> NatsAuth:
    """The users of the embedded server: the service, and the NATS producers of `tokens`."""
    return NatsAuth(
        service=NatsUser(name=credentials.user, password=credentials.password),
        users=tuple(credentials.producer(name, sha) for name, sha in tokens.nats_producers()),
    )


def producer_subjects(name: str) -> tuple[str, str]:
    """Where producer `name` sends events and Alertmanager payloads."""
    return f"intake.{name}.events", f"intake.{name}.alertmanager"


def producer_of(subject: str) -> str | None:
    """The producer an intake subject names (`intake.<name>.events`), None for the shared
    `intake.events`. With tokens on the server lets only that producer publish there."""
    parts = subject.split(".")
    return parts[1] if len(parts) == 3 and parts[0] == "intake" else None


def answerable(subject: str, reply: str) -> bool:
    """Whether, with NATS users on, the service may answer a message on intake `subject` at
    its `reply` subject: on a producer's subjects, only in that producer's inbox.

    The server checks a message's subject against its sender's rights, never its reply
    subject, and the service's user may publish anywhere: answering wherever a message asks
    would let a producer write on the log's subjects through the service (`reply` =
    `incidents.<id>.<type>`) or into another client's inbox. On the shared subjects, which only
    the service's user may publish to with users on, any reply is its own."""
    name = producer_of(subject)
    return name is None or reply.startswith(f"{producer_inbox(name)}.")
