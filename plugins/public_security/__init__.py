"""Public security (公安) connector and reference simulator: household registration (户籍), motor
vehicles (机动车) with 查封 of vehicles (movables: at most two years per term), hotel stays
(住宿记录), and border exit control (边控), which needs a sealed approval."""
