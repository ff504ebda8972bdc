"""What both local brokers share: the error of one that did not start, and the Kafka Metadata
probe that tells a broker is answering the protocol, not merely accepting TCP.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable

__all__ = ["BrokerError", "wait_for_kafka"]


class BrokerError(RuntimeError):
    """The broker did not start or did not answer in time."""


def _metadata_request(correlation_id: int) -> bytes:
    # Metadata v1 with a null topic array: "all topics". Small enough to write by hand,
    # and it proves the broker answers the Kafka protocol, not merely accepts TCP.
    client_id = b"flashsale-probe"
    body = struct.pack(">hhih", 3, 1, correlation_id, len(client_id)) + client_id
    body += struct.pack(">i", -1)
    return struct.pack(">i", len(body)) + body


def wait_for_kafka(host: str, port: int, timeout_s: float, alive: Callable[[], bool]) -> None:
    """Block until a Kafka Metadata request to host:port is answered, or raise BrokerError."""
    deadline = time.monotonic() + timeout_s
    last_error = "no answer"
    correlation_id = 1
    while time.monotonic() < deadline:
        if not alive():
            raise BrokerError("broker process exited during start-up")
        try:
            with socket.create_connection((host, port), timeout=1.0) as conn:
                conn.sendall(_metadata_request(correlation_id))
                header = conn.recv(8)
                if len(header) == 8 and struct.unpack(">ii", header)[1] == correlation_id:
                    return
                last_error = f"unexpected reply {header!r}"
        except OSError as exc:
            last_error = str(exc)
        correlation_id += 1
        time.sleep(0.05)
    raise BrokerError(
        f"no Kafka metadata answer from {host}:{port} in {timeout_s:.0f}s: {last_error}"
    )
