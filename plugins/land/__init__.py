"""Real-estate registry (不动产登记) connector and reference simulator: registrations by owner
(certificate no., address, area, owner share) and 查封 / 续封 / 轮候查封 / 解封 with terms of at
most three years (民诉法解释 2022 第485条)."""
