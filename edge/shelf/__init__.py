"""edge/shelf."""
