"""The @connections management API's rules and error shapes (pure).

boto3 maps an error to its modelled class only when the response names the type
(``x-amzn-ErrorType``) or the JSON body carries ``__type``; a bare status gives a
generic ``ClientError``. So every error here carries both.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import unquote

from fanbench_common.limits import MAX_MESSAGE_BYTES
from loadtest.stage.events import is_valid_id


@dataclass(frozen=True)
class ApiError:
    status: int
    error_type: str
    message: str

    def headers(self) -> dict[str, str]:
        return {"x-amzn-ErrorType": self.error_type, "Content-Type": "application/json"}

    def body(self) -> bytes:
        return json.dumps({"__type": self.error_type, "message": self.message}).encode()


GONE = ApiError(410, "GoneException", "")
MISSING_AUTH = ApiError(403, "ForbiddenException", "Missing Authentication Token")
THROTTLED = ApiError(429, "LimitExceededException", "Rate exceeded")
INTERNAL = ApiError(500, "InternalServerErrorException", "Internal server error")


def bad_id(connection_id: str) -> ApiError:
    return ApiError(400, "BadRequestException", f"Invalid connectionId: {connection_id}")


def too_large(size: int) -> ApiError:
    return ApiError(
        413, "PayloadTooLargeException", f"Message of {size} bytes exceeds {MAX_MESSAGE_BYTES}"
    )


@dataclass(frozen=True)
class Target:
    stage: str
    connection_id: str


def parse_path(raw_path: str) -> Target | None:
    """``/{stage}/@connections/{url-encoded id}`` → its parts, or ``None`` if it is not one."""
    parts = raw_path.split("?", 1)[0].split("/")
    if len(parts) != 4 or parts[0] != "" or parts[2] != "@connections" or not parts[3]:
        return None
    return Target(stage=unquote(parts[1]), connection_id=unquote(parts[3]))


def check_request(
    target: Target | None, method: str, stage: str, has_auth: bool, body_size: int
) -> ApiError | None:
    """The error this request gets before looking at the connection, if any."""
    if target is None or target.stage != stage:
        # AWS answers an unknown path or stage with 403 MissingAuthenticationToken.
        return MISSING_AUTH
    if not has_auth:
        return MISSING_AUTH
    if not is_valid_id(target.connection_id):
        return bad_id(target.connection_id)
    if method == "POST" and body_size > MAX_MESSAGE_BYTES:
        return too_large(body_size)
    return None
