"""The vocabulary that ``loadtest`` and ``reports`` share.

Limits, error classes, redaction, the scenario schema and where the deployable
pieces live. Both sides import it; it imports neither, and the deployable
``handlers/`` keep their own copy of the limits (a test holds the two equal).
"""
