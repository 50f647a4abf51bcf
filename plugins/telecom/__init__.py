"""Telecom operator (通信运营商) connector and reference simulator: subscriber numbers by ID
number, and location (定位), which needs a sealed approval."""
