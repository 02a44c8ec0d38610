"""CLI commands, one module per feature; each module lists its click commands in COMMANDS."""
