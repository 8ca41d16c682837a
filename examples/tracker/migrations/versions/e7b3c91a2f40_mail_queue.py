"""mail queue: account mail sent out of the request (issue 13)

Revision ID: e7b3c91a2f40
Revises: 5f1d2c3b4a69
Create Date: 2026-12-02 00:45:00.000000

Requests write their mail (and password resets asked for) to ``mail_queue``
in their own transaction; the job ``tracker.jobs.deliver_mail`` sends it.
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "e7b3c91a2f40"
down_revision = "5f1d2c3b4a69"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "mail_queue",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("sender", sa.String(length=254), nullable=False),
        sa.Column("recipient", sa.String(length=254), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("url_root", sa.String(length=500), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("claim", sa.String(length=32), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mail_queue")),
    )
    op.create_index(
        "ix_mail_queue_next_attempt_at", "mail_queue", ["next_attempt_at", "id"], unique=False
    )


def downgrade():
    op.drop_index("ix_mail_queue_next_attempt_at", table_name="mail_queue")
    op.drop_table("mail_queue")
