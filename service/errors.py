"""Errors the domain raises; each carries the HTTP status it maps to (service/api/errors.py).

ServiceError
 ├── NotAuthenticated    401  WWW-Authenticate: Bearer
 ├── Forbidden           403
 ├── NotFound            404
 ├── Conflict            409
 └── TooManyAttempts     429  Retry-After
"""


class ServiceError(Exception):
    status_code = 500

    def __init__(self, detail: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers


class NotAuthenticated(ServiceError):
    status_code = 401

    def __init__(self, detail: str) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": "Bearer"})


class Forbidden(ServiceError):
    status_code = 403


class NotFound(ServiceError):
    status_code = 404


class Conflict(ServiceError):
    status_code = 409


class TooManyAttempts(ServiceError):
    status_code = 429

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after)})
