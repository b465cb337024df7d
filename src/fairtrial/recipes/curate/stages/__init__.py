"""The curate recipe's stage functions, by part, each file in the order its stages run:
curation.py (part 1: collect -> quality -> language -> dedup -> select) and distill.py (part 2:
teacher -> train -> merge -> quantize -> reference -> evaluate)."""
