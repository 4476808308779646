"""Plain-text mail over SMTP (password-reset links), sent from a thread so the event loop
never waits on the mail server. Failures are logged, never shown to the asker (that would
tell them whether the address has an account)."""

from __future__ import annotations

import asyncio
import logging
import smtplib
import ssl
from email.message import EmailMessage
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aicredits.settings import Settings

log = logging.getLogger("aicredits.mail")


class SmtpMailer:
    def __init__(self, host: str, port: int, sender: str, *, user: str | None = None, password: str | None = None,
                 tls: str = "starttls", timeout: float = 15.0) -> None:
        self.host, self.port, self.sender = host, port, sender
        self._user, self._password, self._tls, self._timeout = user, password, tls, timeout

    @classmethod
    def from_settings(cls, s: Settings) -> SmtpMailer | None:
        if not s.smtp_host or not s.smtp_from:     # (settings require the sender with the host)
            return None
        return cls(s.smtp_host, s.smtp_port, s.smtp_from, user=s.smtp_user, password=s.smtp_password, tls=s.smtp_tls)

    def _send(self, msg: EmailMessage) -> None:
        context = ssl.create_default_context()
        smtp: smtplib.SMTP
        if self._tls == "ssl":
            smtp = smtplib.SMTP_SSL(self.host, self.port, timeout=self._timeout, context=context)
        else:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self._timeout)
        with smtp:
            if self._tls == "starttls":
                smtp.starttls(context=context)
            if self._user:
                smtp.login(self._user, self._password or "")
            smtp.send_message(msg)

    async def send(self, to: str, subject: str, text: str) -> None:
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = self.sender, to, subject
        msg.set_content(text)
        try:
            await asyncio.to_thread(self._send, msg)
        except (OSError, smtplib.SMTPException) as exc:
            log.error("mail to %s could not be sent through %s:%d: %s", to, self.host, self.port, exc)
