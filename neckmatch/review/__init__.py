"""The review service: radiologist and pathologist resolve the engine's undecided matches, blind, with
adjudication and an append-only audit trail (``neckmatch serve``; ``docs/review.md``).

An adapter over the matching engine, no science: a settled decision becomes a constraint and the case is
re-solved by :func:`neckmatch.correlation.matching.match_case`.
"""
