"""raydsbs: Distilling Step-by-Step on Ray."""
