"""tasks: ciphertext stays in the row (no TOAST) up to a full page, and is never compressed

Revision ID: 0007_tasks_inline_ciphertext
Revises: 0006_tasks_statement_fk

A row over ~2 kB goes through TOAST by default: PostgreSQL first tries to compress its largest values, then
moves them to the TOAST table (a second heap insert and index entry per task). Task payloads are
AES-GCM ciphertext, which does not compress, and a redacted task with its redaction report is ~2.4 kB: in
the redaction-on import 99 % of rows paid for a useless compression attempt and the out-of-line copy.
Rows up to 8160 bytes now stay whole in the table, and larger ciphertext moves out of line uncompressed.
"""
from alembic import op

revision = "0007_tasks_inline_ciphertext"
down_revision = "0006_tasks_statement_fk"
branch_labels = None
depends_on = None

SCHEMA = "quorum_api"


def upgrade() -> None:
    op.execute(f"ALTER TABLE {SCHEMA}.tasks SET (toast_tuple_target = 8160)")
    op.execute(f"ALTER TABLE {SCHEMA}.tasks ALTER COLUMN data_enc SET STORAGE EXTERNAL, "
               "ALTER COLUMN original_enc SET STORAGE EXTERNAL")


def downgrade() -> None:
    op.execute(f"ALTER TABLE {SCHEMA}.tasks ALTER COLUMN data_enc SET STORAGE EXTENDED, "
               "ALTER COLUMN original_enc SET STORAGE EXTENDED")
    op.execute(f"ALTER TABLE {SCHEMA}.tasks RESET (toast_tuple_target)")
