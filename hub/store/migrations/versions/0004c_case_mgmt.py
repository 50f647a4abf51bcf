"""case management: case-node deadlines, 终本 follow-up, statistics summaries

Revision ID: 0004c
Revises: 0003
Create Date: 2026-11-23 15:00:00

A parallel head beside the other workflow modules' migrations (the store upgrades to every head).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

# The tables live on the shared metadata in these modules (the store test compares the two).
import hub.workflows.stats  # noqa: F401

revision = "0004c"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "case_tracks",
        sa.Column("case_number", sa.String(length=64), nullable=False),
        sa.Column("court", sa.String(length=16), nullable=False),
        sa.Column("filed_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=True),
        sa.Column("parties", sa.Integer(), nullable=False),
        sa.Column("assets_found", sa.Boolean(), nullable=False),
        sa.Column("track", sa.String(length=4), nullable=False),
        sa.Column("triage_rule", sa.Text(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("case_number", name=op.f("pk_case_tracks")),
    )
    op.create_table(
        "case_nodes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("case_number", sa.String(length=64), nullable=False),
        sa.Column("node", sa.String(length=32), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("label", sa.Text(), nullable=False),
        sa.Column("started_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("due_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("done_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("overdue_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("supervise", sa.Boolean(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_case_nodes")),
    )
    with op.batch_alter_table("case_nodes", schema=None) as batch_op:
        batch_op.create_index("ix_case_nodes_case", ["case_number", "node"], unique=False)
        batch_op.create_index("ix_case_nodes_due", ["done_at_ms", "due_at_ms"], unique=False)
    op.create_table(
        "node_supervisions",
        sa.Column("court", sa.String(length=16), nullable=False),
        sa.Column("case_number", sa.String(length=64), nullable=False),
        sa.Column("node", sa.String(length=32), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("label", sa.Text(), nullable=False),
        sa.Column("due_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("reported_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("item_id", sa.String(length=64), nullable=True),
        sa.Column("raised_at_ms", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("court", "case_number", "node", "seq", name=op.f("pk_node_supervisions")),
    )
    op.create_table(
        "case_conclusions",
        sa.Column("case_number", sa.String(length=64), nullable=False),
        sa.Column("court", sa.String(length=16), nullable=False),
        sa.Column("concluded_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("checklist", sa.Text(), nullable=False),
        sa.Column("applicant", sa.Text(), nullable=False),
        sa.Column("baseline_assets", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("rounds", sa.Integer(), nullable=False),
        sa.Column("next_inquiry_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("followup_until_ms", sa.BigInteger(), nullable=False),
        sa.Column("round_started_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("resume_case_number", sa.String(length=64), nullable=True),
        sa.Column("updated_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("case_number", name=op.f("pk_case_conclusions")),
    )
    with op.batch_alter_table("case_conclusions", schema=None) as batch_op:
        batch_op.create_index("ix_case_conclusions_due", ["state", "next_inquiry_at_ms"], unique=False)
    op.create_table(
        "followup_rounds",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("case_number", sa.String(length=64), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("due_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("started_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("requested", sa.Boolean(), nullable=False),
        sa.Column("completed_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("inquiries", sa.Integer(), nullable=True),
        sa.Column("answered", sa.Integer(), nullable=True),
        sa.Column("assets_found", sa.Integer(), nullable=True),
        sa.Column("new_assets", sa.Text(), nullable=True),
        sa.Column("result", sa.String(length=16), nullable=True),
        sa.Column("notice", sa.Text(), nullable=True),
        sa.Column("notified_at_ms", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_followup_rounds")),
    )
    with op.batch_alter_table("followup_rounds", schema=None) as batch_op:
        batch_op.create_index("ix_followup_rounds_case", ["case_number", "round"], unique=False)
    op.create_table(
        "resume_tasks",
        sa.Column("task_id", sa.String(length=32), nullable=False),
        sa.Column("case_number", sa.String(length=64), nullable=False),
        sa.Column("court", sa.String(length=16), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("raised_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("assets", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("resume_case_number", sa.String(length=64), nullable=True),
        sa.Column("done_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("task_id", name=op.f("pk_resume_tasks")),
    )
    with op.batch_alter_table("resume_tasks", schema=None) as batch_op:
        batch_op.create_index("ix_resume_tasks_case", ["case_number"], unique=False)
    op.create_table(
        "stats_summaries",
        sa.Column("court", sa.String(length=16), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.Column("received_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("seal", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("envelope_id", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("court", name=op.f("pk_stats_summaries")),
    )


def downgrade() -> None:
    op.drop_table("stats_summaries")
    with op.batch_alter_table("resume_tasks", schema=None) as batch_op:
        batch_op.drop_index("ix_resume_tasks_case")
    op.drop_table("resume_tasks")
    with op.batch_alter_table("followup_rounds", schema=None) as batch_op:
        batch_op.drop_index("ix_followup_rounds_case")
    op.drop_table("followup_rounds")
    with op.batch_alter_table("case_conclusions", schema=None) as batch_op:
        batch_op.drop_index("ix_case_conclusions_due")
    op.drop_table("case_conclusions")
    op.drop_table("node_supervisions")
    with op.batch_alter_table("case_nodes", schema=None) as batch_op:
        batch_op.drop_index("ix_case_nodes_due")
        batch_op.drop_index("ix_case_nodes_case")
    op.drop_table("case_nodes")
    op.drop_table("case_tracks")
