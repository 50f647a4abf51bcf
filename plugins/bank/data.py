"""Seeded bank data: accounts, balances, transaction history and other courts' freezes.

Pure functions of the seed (no clock): instants are day offsets from the store's genesis day.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass

from plugins.agency.ledger import SeedMeasure
from plugins.agency.synth import Person, agency_rng, luhn_complete, other_court_case, population

# (bank name, card BIN)
BANKS = (
    ("中国工商银行", "622202"),
    ("中国建设银行", "621700"),
    ("中国农业银行", "622848"),
    ("中国银行", "621661"),
    ("中国邮政储蓄银行", "621799"),
)
SUMMARIES_IN = ("工资", "转账", "网银转账", "利息", "退款", "经营收入")
SUMMARIES_OUT = ("消费", "ATM取款", "转账", "网银转账", "还款", "缴费")
CHANNELS = ("柜面", "网银", "手机银行", "ATM", "POS")
COMPANIES = ("商贸有限公司", "建筑工程有限公司", "物流有限公司", "科技有限公司", "餐饮管理有限公司")


@dataclass(frozen=True)
class SeedTxn:
    day_offset: int  # days before genesis (negative)
    minute: int  # minute of that day
    amount_fen: int  # + in, − out
    balance_after_fen: int
    counterparty_name: str
    counterparty_account: str
    summary: str
    channel: str


@dataclass(frozen=True)
class SeedAccount:
    account_no: str
    owner: Person
    bank_name: str
    branch: str
    account_type: str
    balance_fen: int
    opened_offset_days: int
    transactions: tuple[SeedTxn, ...]


@dataclass(frozen=True)
class BankSeed:
    accounts: tuple[SeedAccount, ...]
    freezes: tuple[SeedMeasure, ...]


def _transactions(rng: random.Random, balance: int, people: tuple[Person, ...]) -> tuple[SeedTxn, ...]:
    count = rng.randrange(8, 30)
    days = sorted({-rng.randrange(1, 360) for _ in range(count)})
    out: list[SeedTxn] = []
    after = balance
    for day in reversed(days):  # newest first, walking the balance backwards
        inflow = after > 0 and rng.random() < 0.5
        if inflow:
            amount = min(after, rng.randrange(100_00, 2_000_000))
            summary = rng.choice(SUMMARIES_IN)
        else:
            amount = -rng.randrange(10_00, 500_000)
            summary = rng.choice(SUMMARIES_OUT)
        if rng.random() < 0.5:
            cp_name = rng.choice(people).name
        else:
            city = rng.choice(people).area.city
            cp_name = f"{city}{rng.choice('鑫达恒隆盛华信远')}{rng.choice('源通泰丰兴')}{rng.choice(COMPANIES)}"
        cp_account = luhn_complete(rng.choice(BANKS)[1] + "".join(rng.choice("0123456789") for _ in range(12)))
        out.append(
            SeedTxn(
                day, rng.randrange(8 * 60, 22 * 60), amount, after, cp_name, cp_account, summary, rng.choice(CHANNELS)
            )
        )
        after -= amount
    out.reverse()
    return tuple(out)


def _account(
    rng: random.Random, owner: Person, people: tuple[Person, ...], balance: int, bank_index: int | None = None
) -> SeedAccount:
    bank, bin_ = BANKS[bank_index] if bank_index is not None else rng.choice(BANKS)
    number = luhn_complete(bin_ + "".join(rng.choice("0123456789") for _ in range(12)))
    return SeedAccount(
        account_no=number,
        owner=owner,
        bank_name=bank,
        branch=f"{bank}{owner.area.city}{owner.area.district}支行",
        account_type=rng.choice(("借记卡", "借记卡", "活期储蓄", "定期存款")),
        balance_fen=balance,
        opened_offset_days=-rng.randrange(400, 5000),
        transactions=_transactions(rng, balance, people),
    )


@functools.cache
def generate(seed: int) -> BankSeed:
    rng = agency_rng(seed, "bank")
    accounts: list[SeedAccount] = []
    freezes: list[SeedMeasure] = []
    people = population(seed)
    for person in people:
        if person.role == "no_assets":
            continue
        if person.role == "rich":
            accounts.append(_account(rng, person, people, 50_000_000, 0))  # 500,000.00 元
            accounts.append(_account(rng, person, people, 1_234_567, 1))  # 12,345.67 元
            continue
        if person.role == "encumbered":
            acc = _account(rng, person, people, 8_000_000, 2)  # 80,000.00 元, 50,000.00 元 frozen by another court
            accounts.append(acc)
            code, name, case_no = other_court_case(rng)
            freezes.append(SeedMeasure(acc.account_no, person.id_no, code, name, case_no, -60, 365, 5_000_000))
            continue
        if rng.random() >= 0.7:
            continue
        for _ in range(rng.choice((1, 1, 2, 3))):
            balance = 0 if rng.random() < 0.15 else int(10 ** rng.uniform(3, 8.3))
            acc = _account(rng, person, people, balance)
            accounts.append(acc)
            if balance > 0 and rng.random() < 0.12:
                code, name, case_no = other_court_case(rng)
                amount = max(1, int(balance * rng.uniform(0.3, 1.0)))
                start = -rng.randrange(10, 300)
                freezes.append(SeedMeasure(acc.account_no, person.id_no, code, name, case_no, start, 365, amount))
    return BankSeed(tuple(accounts), tuple(freezes))
