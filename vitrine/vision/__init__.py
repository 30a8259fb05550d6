"""Finding people and their garments in photos (shop the look)."""
