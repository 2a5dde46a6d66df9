"""tasks → projects: one referential check per statement instead of one per row

Revision ID: 0006_tasks_statement_fk
Revises: 0005_media

A foreign key checks every inserted row with its own lookup and row lock on the project; for a bulk import
that is the single largest cost after the rows themselves (`benchmarks/ingest_db_ceiling.py`: 50k → 64k
tasks/s COPY with the check below). The same guarantees, set-based:
- after each INSERT or UPDATE statement on tasks, every project the new rows name must exist; it is locked
  FOR KEY SHARE, exactly as the foreign key would, so a concurrent project delete waits for the commit;
- deleting a project deletes its tasks (what ON DELETE CASCADE did), and with them their pseudonym rows.
"""
from alembic import op

revision = "0006_tasks_statement_fk"
down_revision = "0005_media"
branch_labels = None
depends_on = None

SCHEMA = "quorum_api"


def upgrade() -> None:
    op.drop_constraint("tasks_project_id_fkey", "tasks", schema=SCHEMA, type_="foreignkey")
    op.execute(f"""
CREATE FUNCTION {SCHEMA}.tasks_projects_exist() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  missing uuid;
BEGIN
  SELECT n.project_id INTO missing
    FROM (SELECT DISTINCT project_id FROM new_tasks) AS n
    LEFT JOIN LATERAL (SELECT p.id FROM {SCHEMA}.projects AS p WHERE p.id = n.project_id FOR KEY SHARE) AS p ON true
   WHERE p.id IS NULL
   LIMIT 1;
  IF FOUND THEN
    RAISE EXCEPTION 'insert or update on table "tasks" violates foreign key constraint "tasks_project_id_fkey"'
      USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'tasks_project_id_fkey',
            DETAIL = format('Key (project_id)=(%s) is not present in table "projects".', missing);
  END IF;
  RETURN NULL;
END $$""")
    for event in ("INSERT", "UPDATE"):
        op.execute(f"""
CREATE TRIGGER tasks_projects_exist_{event.lower()} AFTER {event} ON {SCHEMA}.tasks
  REFERENCING NEW TABLE AS new_tasks FOR EACH STATEMENT EXECUTE FUNCTION {SCHEMA}.tasks_projects_exist()""")
    op.execute(f"""
CREATE FUNCTION {SCHEMA}.projects_delete_tasks() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM {SCHEMA}.tasks WHERE project_id = OLD.id;
  RETURN OLD;
END $$""")
    op.execute(f"""
CREATE TRIGGER projects_delete_tasks AFTER DELETE ON {SCHEMA}.projects
  FOR EACH ROW EXECUTE FUNCTION {SCHEMA}.projects_delete_tasks()""")


def downgrade() -> None:
    op.execute(f"DROP TRIGGER projects_delete_tasks ON {SCHEMA}.projects")
    op.execute(f"DROP FUNCTION {SCHEMA}.projects_delete_tasks()")
    for event in ("insert", "update"):
        op.execute(f"DROP TRIGGER tasks_projects_exist_{event} ON {SCHEMA}.tasks")
    op.execute(f"DROP FUNCTION {SCHEMA}.tasks_projects_exist()")
    op.create_foreign_key("tasks_project_id_fkey", "tasks", "projects", ["project_id"], ["id"], source_schema=SCHEMA,
                          referent_schema=SCHEMA, ondelete="CASCADE")
