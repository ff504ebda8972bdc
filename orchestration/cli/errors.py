"""One line for a client that could not reach Kafka: a refused login, an untrusted
certificate, or no answer at all.
"""

from __future__ import annotations

import logging

__all__ = ["ConnectionFailures", "connection_error", "refused"]


def connection_error(exc: Exception) -> str:
    """One line for a client that could not reach the brokers, naming the protocol it spoke."""
    import os
    import re

    hosts = re.findall(r"\('([^']+)', (\d+)", str(exc))
    where = ",".join(f"{h}:{p}" for h, p in hosts) or "the bootstrap servers"
    protocol = os.environ.get("FLASHSALE_SECURITY_PROTOCOL", "PLAINTEXT")
    return (
        f"cannot connect to Kafka at {where} with security_protocol {protocol} "
        "(check FLASHSALE_BOOTSTRAP_SERVERS and FLASHSALE_SECURITY_PROTOCOL)"
    )


class ConnectionFailures(logging.Handler):
    """Keeps the last reason aiokafka logged for a failed connection: its bootstrap gives up
    with "Unable to bootstrap" alone, and the reason (a refused login, an untrusted
    certificate) is only in its log."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.last: BaseException | None = None
        self.where = ""

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args if isinstance(record.args, tuple) else ()
        causes = [a for a in args if isinstance(a, BaseException)]
        if causes:
            self.last = causes[-1]
            self.where = ":".join(str(a) for a in args[:2]) if len(args) >= 3 else ""


def refused(failures: ConnectionFailures) -> str | None:
    """One line for a connection the brokers refused for its credentials or that did not
    trust their certificate; None for any other failure."""
    import os
    import ssl

    from aiokafka.errors import AuthenticationFailedError, SaslAuthenticationFailed

    cause = failures.last
    where = failures.where or "the bootstrap servers"
    if isinstance(cause, SaslAuthenticationFailed | AuthenticationFailedError):
        user = os.environ.get("FLASHSALE_SASL_USERNAME", "")
        mechanism = os.environ.get("FLASHSALE_SASL_MECHANISM", "PLAIN")
        return (
            f"Kafka at {where} refused the {mechanism} login of user {user!r}: authentication "
            "failed (check FLASHSALE_SASL_USERNAME and FLASHSALE_SASL_PASSWORD)"
        )
    if isinstance(cause, ssl.SSLCertVerificationError):
        reason = cause.verify_message or "certificate verify failed"
        return (
            f"the TLS certificate of Kafka at {where} is not trusted: {reason} (check "
            "FLASHSALE_SSL_CAFILE: the CA that signed the brokers' certificates)"
        )
    return None
