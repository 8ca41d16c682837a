"""accounts and labels: when a user's email was verified, each label's colour

Revision ID: 5cecbfa73808
Revises: 953500b0a7ea
Create Date: 2026-12-01 21:35:04.882925

Accounts that exist already stay unverified (their owners see the banner
and verify with one click); labels that exist already turn grey.
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "5cecbfa73808"
down_revision = "953500b0a7ea"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("label", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("color", sa.String(length=7), server_default="#6b7280", nullable=False)
        )
    with op.batch_alter_table("user_account", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("email_verified_at", sa.DateTime(timezone=True), nullable=True)
        )


def downgrade():
    with op.batch_alter_table("user_account", schema=None) as batch_op:
        batch_op.drop_column("email_verified_at")
    with op.batch_alter_table("label", schema=None) as batch_op:
        batch_op.drop_column("color")
