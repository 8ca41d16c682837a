"""comment edited_at: when a comment's text last changed (issue 13)

Revision ID: c0e4d1a7b913
Revises: 5cecbfa73808
Create Date: 2026-12-01 21:50:00.000000

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "c0e4d1a7b913"
down_revision = "5cecbfa73808"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("comment") as batch_op:
        batch_op.add_column(sa.Column("edited_at", sa.DateTime(timezone=True), nullable=True))


def downgrade():
    with op.batch_alter_table("comment") as batch_op:
        batch_op.drop_column("edited_at")
