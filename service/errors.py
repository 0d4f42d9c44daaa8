"""Errors the domain raises; each carries the HTTP status it maps to.

ServiceError
 ├── NotFound            404
 └── Conflict            409

Database outages are not ServiceErrors: main.py maps the driver's errors to 503.
"""


class ServiceError(Exception):
    status_code = 500

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotFound(ServiceError):
    status_code = 404


class Conflict(ServiceError):
    status_code = 409
