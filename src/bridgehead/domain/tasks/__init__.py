"""Tasks: creation, validation, batching, the state rules, execution bookkeeping and queries.

One module per concern so that each rule (validation, batching, a state transition, pricing,
output ingestion) can be read on its own; none of them commits or imports FastAPI.
"""
