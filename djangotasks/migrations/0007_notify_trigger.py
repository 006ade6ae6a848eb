"""PostgreSQL: every INSERT into the task table wakes the daemons (NOTIFY "djangotasks").

A statement-level trigger rather than a ``pg_notify()`` after each INSERT: ``run()`` is one
round trip, a bulk INSERT of 5,000 tasks sends one notification, and rows inserted by any
other means (a retry, raw SQL, another program) wake the daemons too. Like any NOTIFY, it
is delivered when the transaction commits, and never if it rolls back. Other databases have
no such thing; their wake-up is in djangotasks/daemon/.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db import migrations, router

# The channel of djangotasks.notify.CHANNEL, written out: a migration must not change when
# the code does.
CREATE = """
CREATE OR REPLACE FUNCTION djangotasks_task_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('djangotasks', 'run');
    RETURN NULL;
END
$$;
DROP TRIGGER IF EXISTS djangotasks_wake ON {table};
CREATE TRIGGER djangotasks_wake AFTER INSERT ON {table}
FOR EACH STATEMENT EXECUTE FUNCTION djangotasks_task_inserted();
"""
DROP = """
DROP TRIGGER IF EXISTS djangotasks_wake ON {table};
DROP FUNCTION IF EXISTS djangotasks_task_inserted();
"""


def _run(sql: str) -> Callable[[Any, Any], None]:
    def operation(apps: Any, schema_editor: Any) -> None:
        connection = schema_editor.connection
        task = apps.get_model("djangotasks", "Task")
        if connection.vendor != "postgresql" or not router.allow_migrate_model(
            connection.alias, task
        ):
            return
        schema_editor.execute(sql.format(table=schema_editor.quote_name(task._meta.db_table)))

    return operation


class Migration(migrations.Migration):
    dependencies = [("djangotasks", "0006_schedules")]

    operations = [migrations.RunPython(_run(CREATE), _run(DROP), elidable=False)]
