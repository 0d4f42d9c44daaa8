"""Errors the domain raises; each carries the HTTP status it maps to (service/api/errors.py).

ServiceError
 ├── NotFound            404
 └── Conflict            409
"""


class ServiceError(Exception):
    status_code = 500

    def __init__(self, detail: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers


class NotFound(ServiceError):
    status_code = 404


class Conflict(ServiceError):
    status_code = 409
