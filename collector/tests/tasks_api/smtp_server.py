"""Starts aiosmtpd (PyPI) as the notification tests' SMTP server: STARTTLS required, AUTH
(PLAIN/LOGIN) required after TLS, every accepted message written to OUT_DIR as N.json: envelope recipients, whether
the session was under TLS and authenticated, and the decoded subject and text.

usage: smtp_server.py PORT CERT KEY USER PASSWORD OUT_DIR
Prints "ready" once listening; runs until killed.
"""
import email
import email.policy
import json
import os
import ssl
import sys
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

port, cert, key, user, password, out = sys.argv[1:7]


class Save:
    count = 0

    async def handle_DATA(self, server, session, envelope):
        Save.count += 1
        msg = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        record = {
            "rcpt": envelope.rcpt_tos,
            "from": envelope.mail_from,
            "tls": session.ssl is not None,
            "authenticated": bool(session.authenticated),
            "subject": str(msg["subject"]),
            "text": msg.get_content(),
        }
        path = os.path.join(out, f"{Save.count}.json")
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            json.dump(record, f, ensure_ascii=False)
        os.rename(path + ".tmp", path)
        return "250 Message accepted"


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == user.encode()
        and auth_data.password == password.encode()
    )
    return AuthResult(success=ok)


context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
context.load_cert_chain(cert, key)
controller = Controller(
    Save(),
    hostname="127.0.0.1",
    port=int(port),
    tls_context=context,
    require_starttls=True,
    authenticator=authenticator,
    auth_required=True,
    auth_require_tls=True,
)
controller.start()
print("ready", flush=True)
while True:
    time.sleep(3600)
