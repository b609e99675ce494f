"""Alembic environment: upgrades the journal on the connection pexen hands over.

pexen builds the Alembic Config in code (no ini file) and passes an open
connection through `config.attributes["connection"]`; `render_as_batch`
because SQLite cannot ALTER most things.
"""

from logging.config import fileConfig

from alembic import context
from sqlalchemy import create_engine
from sqlalchemy.exc import ArgumentError

from pexen.journal.models import Base

config = context.config
if config.config_file_name is not None:  # only when run from an ini file
    fileConfig(config.config_file_name)

target_metadata = Base.metadata


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        url = config.get_main_option("sqlalchemy.url")
        if url is None:
            # (what create_engine(None) raised, said here so that it names the option)
            raise ArgumentError("no connection handed over and no sqlalchemy.url in the "
                                "Alembic configuration")
        engine = create_engine(url)
        with engine.connect() as connection:
            _run(connection)
    else:
        _run(connection)


def _run(connection) -> None:  # noqa: ANN001
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"),
                      target_metadata=target_metadata, literal_binds=True,
                      render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()
