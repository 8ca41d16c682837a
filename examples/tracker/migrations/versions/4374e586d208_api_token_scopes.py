"""API token scopes: a token may be read-only

Revision ID: 4374e586d208
Revises: 85b1c3645313
Create Date: 2026-11-27 10:00:00.000000

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "4374e586d208"
down_revision = "85b1c3645313"
branch_labels = None
depends_on = None


def upgrade():
    # Tokens made before scopes existed could do everything: they keep that.
    with op.batch_alter_table("api_token", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("scopes", sa.String(length=100), server_default="read write", nullable=False)
        )


def downgrade():
    with op.batch_alter_table("api_token", schema=None) as batch_op:
        batch_op.drop_column("scopes")
