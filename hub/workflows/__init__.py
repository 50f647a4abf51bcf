"""Enforcement workflows: persisted state machines whose transitions travel as envelopes."""
