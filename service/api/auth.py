from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, status
from fastapi.security import OAuth2PasswordRequestForm

from service import auth
from service.api.deps import BearerToken, CurrentUser, SessionDep, password_turn
from service.config import Settings
from service.errors import NotAuthenticated
from service.schemas import Token

router = APIRouter(prefix="/auth", tags=["auth"])

_401: dict[int | str, dict[str, Any]] = {401: {"description": "Incorrect email or password"}}
_429: dict[int | str, dict[str, Any]] = {
    429: {"description": "Too many failed logins for this email; see Retry-After"}
}


@router.post(
    "/token",
    responses=_401 | _429,
    dependencies=[Depends(password_turn)],
    summary="Log in: trade email and password for a token",
)
async def log_in(
    form: Annotated[OAuth2PasswordRequestForm, Depends()], session: SessionDep, request: Request
) -> Token:
    """OAuth2's password grant: `username` is the email (any case). What /docs' Authorize
    button sends."""
    settings: Settings = request.app.state.settings
    try:
        token = await auth.log_in(
            session,
            username=form.username,
            password=form.password,
            lock=auth.LoginLock(settings.LOGIN_MAX_FAILURES, settings.LOGIN_WINDOW),
            ttl=settings.ACCESS_TOKEN_TTL,
        )
    except NotAuthenticated:
        await session.commit()  # the failure counts towards the lock, although the login fails
        raise
    return Token(access_token=token, expires_in=settings.ACCESS_TOKEN_TTL)


@router.delete(
    "/token", status_code=status.HTTP_204_NO_CONTENT, summary="Log out: revoke the token"
)
async def log_out(_caller: CurrentUser, token: BearerToken, session: SessionDep) -> None:
    await auth.revoke_token(session, token)
