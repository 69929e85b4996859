"""SMTP credentials only ever cross a TLS connection (issue 17, item 10).

Real aiosmtpd servers (STARTTLS, implicit TLS, and one without STARTTLS) with a certificate made in
the test; between the service and the server a relay records every byte the client sends, so the
tests see what an eavesdropper on the wire would see.
"""

import asyncio
import base64
import ssl
import uuid

import aiosmtplib
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from testbed.core import free_port
from testbed.kafka import make_ca_and_server_cert
from todo.notification.app import NotificationSettings
from todo.notification.scheduler import SmtpSettings, send_reminder_email

USER = "mailer@test.invalid"
PASSWORD = "smtp-password-" + uuid.uuid4().hex


class Server:
    """Handler and authenticator of one aiosmtpd server: what it received, and how."""

    def __init__(self):
        self.messages = []
        self.logins = []  # (login, password, over TLS)

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        self.messages.append(envelope.content.decode())
        return "250 OK"

    def __call__(self, server, session, envelope, mechanism, auth_data):
        over_tls = server.transport.get_extra_info("sslcontext") is not None
        self.logins.append((auth_data.login.decode(), auth_data.password.decode(), over_tls))
        return AuthResult(success=True)


class WireRecorder:
    """A TCP relay in front of the server that keeps every byte the client sends."""

    def __init__(self, target_port):
        self.target_port = target_port
        self.sent = bytearray()

    async def __aenter__(self):
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc):
        self.server.close()

    async def _relay(self, client_reader, client_writer):
        server_reader, server_writer = await asyncio.open_connection("127.0.0.1", self.target_port)

        async def pump(reader, writer, record):
            try:
                while data := await reader.read(65536):
                    if record:
                        self.sent += data
                    writer.write(data)
                    await writer.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                writer.close()

        await asyncio.gather(
            pump(client_reader, server_writer, True), pump(server_reader, client_writer, False)
        )

    def shows_credentials(self) -> bool:
        """AUTH PLAIN and LOGIN send base64; any of these on the wire gives the password away."""
        wire = bytes(self.sent)
        encoded = [
            base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()),
            base64.b64encode(PASSWORD.encode()),
            PASSWORD.encode(),
        ]
        return b"AUTH" in wire.upper() or any(e in wire for e in encoded)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_ca_and_server_cert(tmp_path_factory.mktemp("smtp-certs"))


@pytest.fixture
def server_tls(certs):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certs["keystore"])
    return context


def start_server(handler, **options):
    controller = Controller(handler, hostname="127.0.0.1", port=free_port(), authenticator=handler, **options)
    controller.start()
    return controller


def settings(port, certs, **fields):
    return SmtpSettings(
        host="127.0.0.1",
        port=port,
        sender="todo@test.invalid",
        username=USER,
        password=PASSWORD,
        ca_file=str(certs["ca"]),
        timeout=10,
        **fields,
    )


def event():
    data = {"task": {"title": "Pay the rent"}, "due_at": "2030-01-01T09:00:00Z"}
    return {"id": str(uuid.uuid4()), "data": data}


@pytest.mark.parametrize("security", ["starttls", "tls"])
async def test_credentials_cross_only_a_tls_connection(certs, server_tls, security):
    handler = Server()
    if security == "starttls":  # the server also refuses AUTH before STARTTLS
        controller = start_server(handler, tls_context=server_tls, auth_require_tls=True)
    else:
        controller = start_server(handler, ssl_context=server_tls, auth_require_tls=False)
    try:
        async with WireRecorder(controller.port) as wire:
            smtp = settings(wire.port, certs, security=security)
            await send_reminder_email(smtp, "a@test.invalid", event())
    finally:
        controller.stop()
    assert handler.logins == [(USER, PASSWORD, True)]
    assert len(handler.messages) == 1 and "Subject: Reminder: Pay the rent" in handler.messages[0]
    assert wire.sent, "the relay saw no traffic"
    assert not wire.shows_credentials(), "AUTH or the password crossed the wire readable"


async def test_the_default_on_port_587_is_required_starttls(certs, server_tls):
    assert SmtpSettings(host="mail", port=587).security == "starttls"
    assert SmtpSettings(host="mail", port=465).security == "tls"
    assert SmtpSettings(host="mail", port=25).security == "starttls"


async def test_a_server_without_starttls_gets_no_credentials(certs):
    handler = Server()
    # Offers AUTH in plain text and would accept it: a downgraded or misconfigured relay.
    controller = start_server(handler, auth_require_tls=False)
    try:
        async with WireRecorder(controller.port) as wire:
            with pytest.raises(aiosmtplib.SMTPException, match="STARTTLS extension not supported"):
                await send_reminder_email(settings(wire.port, certs), "a@test.invalid", event())
    finally:
        controller.stop()
    assert handler.logins == [] and handler.messages == []
    assert wire.sent, "the client never reached the server"
    assert not wire.shows_credentials()


async def test_a_server_certificate_no_trusted_ca_signed_is_refused(certs, server_tls, tmp_path):
    other = make_ca_and_server_cert(tmp_path / "other")
    handler = Server()
    controller = start_server(handler, tls_context=server_tls, auth_require_tls=True)
    try:
        with pytest.raises(ssl.SSLCertVerificationError):
            await send_reminder_email(settings(controller.port, other), "a@test.invalid", event())
    finally:
        controller.stop()
    assert handler.logins == []


def test_credentials_over_plain_text_refuse_to_start():
    base = dict(
        smtp_host="mail.test.invalid",
        smtp_username=USER,
        smtp_password=PASSWORD,
        smtp_security="none",
        app_api_token="t" * 32,
        database_url="postgresql://u@h/db",
    )
    with pytest.raises(ValueError, match="credentials would cross the network in clear"):
        NotificationSettings(**base).check_can_serve()
    NotificationSettings(**base, development_mode=True).check_can_serve()  # a developer's relay
    # Without credentials plain text is allowed (an unauthenticated relay in the cluster).
    NotificationSettings(**(base | {"smtp_username": None, "smtp_password": None})).check_can_serve()
    with pytest.raises(ValueError, match="SMTP_SECURITY must be one of"):
        NotificationSettings(**(base | {"smtp_security": "ssl"})).check_can_serve()
