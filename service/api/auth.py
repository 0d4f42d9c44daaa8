from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request, Response, status

from service import auth
from service.api.deps import BearerToken, CurrentUser, SessionDep, password_turn
from service.api.errors import documented
from service.config import Settings
from service.errors import NotAuthenticated, TooManyAttempts
from service.schemas import LoginForm, Token

router = APIRouter(prefix="/auth", tags=["auth"])


@router.post(
    "/token",
    responses=documented(NotAuthenticated, TooManyAttempts),
    dependencies=[Depends(password_turn)],
    summary="Log in: trade email and password for a token",
)
async def log_in(
    form: Annotated[LoginForm, Form()], session: SessionDep, request: Request
) -> Token:
    """OAuth2's password grant: `username` is the email (any case). What /docs' Authorize
    button sends."""
    settings: Settings = request.app.state.settings
    try:
        token = await auth.log_in(
            session,
            username=form.username,
            password=form.password,
            lock=request.app.state.login_lock,
            ttl=settings.ACCESS_TOKEN_TTL,
        )
    except NotAuthenticated:
        await session.commit()  # the failure counts towards the lock, although the login fails
        raise
    return Token(access_token=token, expires_in=settings.ACCESS_TOKEN_TTL)


@router.delete(
    "/token",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=documented(NotAuthenticated),
    summary="Log out: revoke the token",
)
async def log_out(_caller: CurrentUser, token: BearerToken, session: SessionDep) -> None:
    await auth.revoke_token(session, token)
