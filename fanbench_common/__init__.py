"""The vocabulary that ``loadtest`` and ``reports`` share.

Limits (``limits``), error classes (``errors``), secret redaction
(``redaction``), the scenario schema and shipped scenario files (``scenario``),
the run-directory format (``rundir``, the contract between the two sides), the
loss ledger (``loss``) and where the bundled template and handlers are
(``resources``). Both sides import it; it imports neither, and the deployable
``handlers/`` keep their own copy of the limits (a test holds the two equal).
"""
