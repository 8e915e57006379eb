"""edge/camera."""
