"""The service's HTTP API as the check scripts call it (scripts/container_check.py and
scripts/scale_load.py). Standard library only: they run on the host's Python."""

import http.client
import json
import urllib.parse
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass
class Client:
    """One keep-alive connection to the service at `base_url`; a new one after an error."""

    base_url: str
    connection: http.client.HTTPConnection | None = None

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: dict[str, Any] | None = None,
        form: dict[str, str] | None = None,
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        """Raises OSError or http.client.HTTPException when no answer came."""
        headers = dict(headers or {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        body = None
        if json_body is not None:
            body = json.dumps(json_body)
            headers["Content-Type"] = "application/json"
        if form is not None:
            body = urllib.parse.urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        if self.connection is None:
            base = urllib.parse.urlsplit(self.base_url)
            self.connection = http.client.HTTPConnection(
                base.hostname or "127.0.0.1", base.port or 80, timeout=10
            )
        try:
            self.connection.request(method, path, body, headers)
            response = self.connection.getresponse()
            raw = response.read()
        except (OSError, http.client.HTTPException):
            self.connection.close()
            self.connection = None
            raise
        return Response(response.status, response.headers, raw)
