"""The mail adapters deliver what the use case wrote, unbroken."""

from __future__ import annotations

import email
import socket
from collections.abc import Iterator
from email.policy import default
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from chalicelib.adapters.mail import OutboxMailer, SmtpMailer
from chalicelib.ports import Mail

LINK = "https://app.example.fr/signup/confirm#token=" + "Ab_-" * 11


class Inbox:
    def __init__(self) -> None:
        self.received: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.append((envelope.mail_from, envelope.rcpt_tos, envelope.content))
        return "250 OK"


@pytest.fixture
def smtp_server() -> Iterator[tuple[Inbox, int]]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


def test_smtp_delivers_one_message_with_the_link_on_one_line(
        smtp_server: tuple[Inbox, int]) -> None:
    inbox, port = smtp_server
    SmtpMailer("127.0.0.1", port, "einvoice <no-reply@einvoice.example>",
               starttls=False).send(Mail("jeanne@example.fr", "Confirm", f"Open:\n{LINK}\n"))
    [(sender, recipients, content)] = inbox.received
    assert sender == "no-reply@einvoice.example" and recipients == ["jeanne@example.fr"]
    message = email.message_from_bytes(content, policy=default)
    assert message["Subject"] == "Confirm" and message["Message-ID"]
    assert LINK.encode() in content  # not folded or quoted-printable encoded


def test_smtp_refuses_to_send_in_clear_when_starttls_is_required(
        smtp_server: tuple[Inbox, int]) -> None:
    inbox, port = smtp_server  # this relay offers no STARTTLS
    with pytest.raises(Exception, match="STARTTLS"):
        SmtpMailer("127.0.0.1", port, "no-reply@einvoice.example").send(
            Mail("jeanne@example.fr", "Confirm", LINK))
    assert inbox.received == []


def test_outbox_writes_private_files(tmp_path: Path) -> None:
    folder = tmp_path / "mail"
    mailer = OutboxMailer(folder, "no-reply@einvoice.example")
    mailer.send(Mail("jeanne@example.fr", "Confirm", f"Open:\n{LINK}\n"))
    mailer.send(Mail("jeanne@example.fr", "Bienvenue", "Déjà là ?\n"))
    files = sorted(folder.glob("*.eml"))
    assert len(files) == 2 and folder.stat().st_mode & 0o777 == 0o700
    assert all(f.stat().st_mode & 0o777 == 0o600 for f in files)
    first = email.message_from_bytes(files[0].read_bytes(), policy=default)
    assert LINK in files[0].read_text() and first["To"] == "jeanne@example.fr"
    second = email.message_from_bytes(files[1].read_bytes(), policy=default)
    body = second.get_body(("plain",))
    assert body is not None and body.get_content() == "Déjà là ?\n"


def test_smtp_envelope_names_exactly_the_one_recipient(smtp_server: tuple[Inbox, int]) -> None:
    """Even if a To value parsed into several addresses, the envelope (where
    mail actually goes) holds only the address the use case checked."""
    inbox, port = smtp_server
    SmtpMailer("127.0.0.1", port, "no-reply@einvoice.example", starttls=False).send(
        Mail("boss@example.fr, victim@example.fr", "Confirm", LINK))
    [(_, recipients, _)] = inbox.received
    assert len(recipients) == 1
