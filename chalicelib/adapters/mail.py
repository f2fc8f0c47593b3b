"""The mail port's adapters: SMTP (a provider's relay) and a local outbox folder.

Messages carry one-time links: they are written or sent, never logged.
"""

from __future__ import annotations

import os
import smtplib
import ssl
import uuid
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

from chalicelib.ports import Mail


def _message(mail: Mail, sender: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = mail.to
    message["Subject"] = mail.subject
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    # Plain 7-bit when possible, so a link stays one unbroken, copyable line.
    message.set_content(mail.body, cte="7bit" if mail.body.isascii() else "quoted-printable")
    return message


class OutboxMailer:
    """Local development and tests: each message is a .eml file (0600) in a folder."""

    def __init__(self, folder: Path, sender: str) -> None:
        self._folder = folder
        self._sender = sender

    def send(self, mail: Mail) -> None:
        self._folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        name = f"{datetime.now(UTC):%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex}.eml"
        fd = os.open(self._folder / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(bytes(_message(mail, self._sender)))


class SmtpMailer:
    """A provider's SMTP relay, over STARTTLS (verified certificate) unless
    `starttls` is off for a relay on loopback."""

    def __init__(self, host: str, port: int, sender: str, *, user: str | None = None,
                 password: str | None = None, starttls: bool = True,
                 timeout: float = 10.0) -> None:
        self._host, self._port, self._sender = host, port, sender
        self._user, self._password = user, password
        self._starttls, self._timeout = starttls, timeout

    def send(self, mail: Mail) -> None:
        with smtplib.SMTP(self._host, self._port, timeout=self._timeout) as smtp:
            if self._starttls:
                smtp.starttls(context=ssl.create_default_context())
            if self._user is not None:
                smtp.login(self._user, self._password or "")
            # The envelope names exactly one recipient, whatever the To header parses to.
            smtp.send_message(_message(mail, self._sender), to_addrs=[mail.to])
