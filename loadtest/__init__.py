"""fanbench's load generator, local stage and CLI."""

from loadtest.paths import put_handlers_on_path

# aws_limits (the one module of AWS constants) lives with the deployable handlers.
put_handlers_on_path()
