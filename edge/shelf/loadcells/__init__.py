"""edge/shelf/loadcells."""
