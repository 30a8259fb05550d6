"""Encoders: images and texts to vectors, plus the defensive image decoding they share."""
