"""event outbox: karaffe.events writes the events of a transaction here, in it

Revision ID: 953500b0a7ea
Revises: aef3d08bf328
Create Date: 2026-12-01 19:30:43.216541

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "953500b0a7ea"
down_revision = "aef3d08bf328"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "karaffe_event_outbox",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("channel", sa.String(length=200), nullable=False),
        sa.Column("type", sa.String(length=100), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_karaffe_event_outbox")),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_karaffe_event_outbox_channel_id", "karaffe_event_outbox", ["channel", "id"])


def downgrade():
    op.drop_index("ix_karaffe_event_outbox_channel_id", table_name="karaffe_event_outbox")
    op.drop_table("karaffe_event_outbox")
