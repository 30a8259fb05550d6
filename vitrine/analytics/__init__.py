"""Search analytics: what shoppers asked, what they found, what they clicked."""
