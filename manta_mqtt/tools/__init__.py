"""Operator tools: watching the topics, listing nodes."""
