"""issue activity, watches and notifications (issue 13)

Revision ID: d5a2f0c8e417
Revises: c0e4d1a7b913
Create Date: 2026-12-01 22:40:00.000000

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "d5a2f0c8e417"
down_revision = "c0e4d1a7b913"
branch_labels = None
depends_on = None


def _org(table):
    return sa.ForeignKeyConstraint(
        ["organization_id"],
        ["organization.id"],
        name=op.f(f"fk_{table}_organization_id_organization"),
        ondelete="CASCADE",
    )


def upgrade():
    op.create_table(
        "issue_activity",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("issue_id", sa.Integer(), nullable=False),
        sa.Column("actor_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("organization_id", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "kind IN ('created', 'title', 'description', 'status', 'assignee', 'labels', "
            "'comment')",
            name=op.f("ck_issue_activity_kind"),
        ),
        sa.ForeignKeyConstraint(
            ["actor_id"],
            ["user_account.id"],
            name=op.f("fk_issue_activity_actor_id_user_account"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["issue_id"],
            ["issue.id"],
            name=op.f("fk_issue_activity_issue_id_issue"),
            ondelete="CASCADE",
        ),
        _org("issue_activity"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_issue_activity")),
    )
    with op.batch_alter_table("issue_activity") as batch_op:
        batch_op.create_index("ix_issue_activity_issue_id_id", ["issue_id", "id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_issue_activity_organization_id"), ["organization_id"], unique=False
        )

    op.create_table(
        "issue_watch",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("issue_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("watching", sa.Boolean(), nullable=False),
        sa.Column("organization_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["issue_id"],
            ["issue.id"],
            name=op.f("fk_issue_watch_issue_id_issue"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["user_account.id"],
            name=op.f("fk_issue_watch_user_id_user_account"),
            ondelete="CASCADE",
        ),
        _org("issue_watch"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_issue_watch")),
        sa.UniqueConstraint("issue_id", "user_id", name=op.f("uq_issue_watch_issue_id")),
    )
    with op.batch_alter_table("issue_watch") as batch_op:
        batch_op.create_index(batch_op.f("ix_issue_watch_user_id"), ["user_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_issue_watch_organization_id"), ["organization_id"], unique=False
        )

    op.create_table(
        "notification",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("activity_id", sa.Integer(), nullable=False),
        sa.Column("issue_id", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(length=20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("read_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("organization_id", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "reason IN ('mentioned', 'assigned', 'watching')", name=op.f("ck_notification_reason")
        ),
        sa.ForeignKeyConstraint(
            ["activity_id"],
            ["issue_activity.id"],
            name=op.f("fk_notification_activity_id_issue_activity"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["issue_id"],
            ["issue.id"],
            name=op.f("fk_notification_issue_id_issue"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["user_account.id"],
            name=op.f("fk_notification_user_id_user_account"),
            ondelete="CASCADE",
        ),
        _org("notification"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification")),
        sa.UniqueConstraint("user_id", "activity_id", name=op.f("uq_notification_user_id")),
    )
    with op.batch_alter_table("notification") as batch_op:
        batch_op.create_index(
            batch_op.f("ix_notification_activity_id"), ["activity_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_notification_issue_id"), ["issue_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_notification_organization_id"), ["organization_id"], unique=False
        )
        batch_op.create_index("ix_notification_user_id_id", ["user_id", "id"], unique=False)
        batch_op.create_index(
            "ix_notification_user_id_read_at", ["user_id", "read_at"], unique=False
        )


def downgrade():
    op.drop_table("notification")
    op.drop_table("issue_watch")
    op.drop_table("issue_activity")
