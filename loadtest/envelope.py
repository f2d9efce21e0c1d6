"""The chat ``message`` fanbench sends: a compact, self-describing envelope (pure).

``fb1:<client>:<seq>:<intended_ns>:<sent_ns>:<padding>`` — colon-separated so
that it survives JSON quoting unchanged and parses with one ``split``. The
handlers forward it untouched, so the same users measure every variant.
"""

from __future__ import annotations

from typing import NamedTuple

MAGIC = "fb1"
PAD_CHAR = "."


class Envelope(NamedTuple):
    client: int
    seq: int
    intended_ns: int
    sent_ns: int


def encode(envelope: Envelope, size: int = 0) -> str:
    """The envelope, padded with dots to ``size`` characters when shorter."""
    head = f"{MAGIC}:{envelope.client}:{envelope.seq}:{envelope.intended_ns}:{envelope.sent_ns}:"
    return head + PAD_CHAR * max(0, size - len(head))


def decode(text: str) -> Envelope | None:
    """The envelope in ``text``, or ``None`` for anything else (error frames, replies)."""
    if not text.startswith(MAGIC + ":"):
        return None
    parts = text.split(":", 5)
    if len(parts) != 6:
        return None
    try:
        return Envelope(int(parts[1]), int(parts[2]), int(parts[3]), int(parts[4]))
    except ValueError:
        return None


def sendmessage_frame(envelope_text: str) -> str:
    """The frame a client sends: ``{"action":"sendmessage","message":"<envelope>"}``.

    The envelope holds no characters JSON escapes, so it is spliced in directly.
    """
    return '{"action":"sendmessage","message":"' + envelope_text + '"}'
