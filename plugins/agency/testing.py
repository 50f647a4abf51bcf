"""Helpers for tests and demos that drive the simulators: a requesting court, control orders, and
sealed-approval issuers with a trust file. Not used by the simulators themselves."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from plugins.agency.approval import make_approval, write_trusted_approvers
from plugins.agency.model import ControlCode, ControlOrder, CourtInfo, Subject

T0_ISO = "2026-01-01T00:00:00Z"
T0_MS = 1_767_225_600_000
DAY_MS = 86_400_000

DOCUMENTS = {
    ControlCode.FREEZE: "协助冻结存款通知书",
    ControlCode.RENEW: "协助冻结存款通知书（续冻）",
    ControlCode.WAITING: "协助冻结存款通知书（轮候）",
    ControlCode.RELEASE: "协助解除冻结存款通知书",
    ControlCode.RELEASE_WAITING: "协助解除冻结存款通知书（轮候）",
    ControlCode.DEDUCT: "协助扣划存款通知书",
    ControlCode.FREEZE_DEDUCT: "协助冻结、扣划存款通知书",
}


def court(
    code: str = "豫1402",
    name: str = "商丘市梁园区人民法院",
    *,
    case_no: str | None = None,
    document_name: str | None = "协助执行通知书",
    document_no: str | None = None,
) -> CourtInfo:
    """A requesting court with plausible officers and documents."""
    case = case_no or f"（2026）{code}执100号"
    return CourtInfo(
        court_code=code,
        court_name=name,
        case_no=case,
        judge_name="李明",
        judge_phone="0370-3211234",
        officer_ids=(f"{code}-0001", f"{code}-0002"),
        document_name=document_name,
        document_no=document_no if document_no is not None else case.replace("号", "号之一"),
    )


OTHER_COURT = ("桂0305", "桂林市七星区人民法院")


def order(
    code: ControlCode | str,
    who: CourtInfo,
    subject: Subject,
    *,
    asset_id: str | None = None,
    measure_id: str | None = None,
    amount_fen: int | None = None,
    term_days: int | None = None,
    request_id: str | None = None,
) -> ControlOrder:
    code = ControlCode(code)
    return ControlOrder(
        request_id=request_id or f"t-{uuid.uuid4().hex[:16]}",
        control_code=code,
        court=who,
        subject=subject,
        asset_id=asset_id,
        measure_id=measure_id,
        amount_fen=amount_fen,
        term_days=term_days,
    )


@dataclass
class Approver:
    """An approving court's signing key (what the upper court's node holds)."""

    court_code: str
    key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)

    def approve(
        self,
        *,
        case_no: str,
        act: str,
        subject_id: str,
        now_ms: int = T0_MS,
        ttl_s: int = 7 * 86_400,
        jti: str | None = None,
        iss: str | None = None,
    ) -> str:
        return make_approval(
            self.key,
            iss=iss or self.court_code,
            sub=case_no,
            act=act,
            subject_id=subject_id,
            now_s=now_ms // 1000,
            ttl_s=ttl_s,
            jti=jti,
        )


def write_trust_file(path: Path, *approvers: Approver) -> Path:
    write_trusted_approvers(path, {a.court_code: a.key.public_key() for a in approvers})
    return path
