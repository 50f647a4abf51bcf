"""Bank (银行) connector and reference simulator: deposit accounts by ID number, balances,
transaction detail, and control measures with bank control codes 01–08 (冻结, 续冻, 轮候冻结, 解冻,
解除轮候, 扣划, 冻结并扣划). Deposits may be frozen for at most one year per term
(民诉法解释 2022 第485条)."""
