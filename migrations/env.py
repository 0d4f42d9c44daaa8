"""Alembic's async environment: its `async` template, with the database and the models of the
service, and the calls into service/migrating.py that the template does not make."""

from logging.config import fileConfig

from alembic import context
from sqlalchemy.engine import Connection

from service import migrating
from service.models import Base

# this is the Alembic Config object, which provides
# access to the values within the .ini file in use.
config = context.config

# Interpret the config file for Python logging, unless the code running Alembic has its own.
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

# The MetaData of every model (service/models.py holds them all), for 'autogenerate'.
target_metadata = Base.metadata


def run_migrations_offline() -> None:
    """Run migrations in 'offline' mode: emit their SQL (`alembic upgrade head --sql`)."""
    settings = migrating.settings()
    context.configure(
        url=settings.database_url,  # the URL object: str() would hide the password
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        **migrating.options(config),
    )
    if context.get_context().dialect.name == "postgresql":
        # The script a DBA runs waits for table locks no longer than `alembic upgrade` does.
        context.execute(f"SET lock_timeout = '{migrating.lock_timeout(settings)}'")

    with context.begin_transaction():
        context.run_migrations()


def do_run_migrations(connection: Connection) -> None:
    with migrating.sqlite_ids_kept(connection) as after_each_migration:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            on_version_apply=after_each_migration,
            **migrating.options(config),
        )

        with context.begin_transaction():
            context.run_migrations()


async def run_async_migrations() -> None:
    """In this scenario we need to create an Engine
    and associate a connection with the context.

    """
    connectable = migrating.create_engine(migrating.settings())

    async with connectable.connect() as connection:
        await connection.run_sync(migrating.wait_for_other_runs)
        await connection.run_sync(do_run_migrations)

    await connectable.dispose()


def run_migrations_online() -> None:
    """Run migrations in 'online' mode: on a connection of our own, or on one that code
    running Alembic's commands hands over (Alembic's cookbook)."""
    connectable = config.attributes.get("connection", None)

    if connectable is None:
        migrating.run(run_async_migrations)
    else:
        migrating.wait_for_other_runs(connectable)
        do_run_migrations(connectable)


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
