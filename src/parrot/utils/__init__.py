"""Small helpers shared by every layer: atomic writes, progress, seeding."""
