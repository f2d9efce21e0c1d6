"""fanbench's load generator, local stage and CLI."""
