"""Golden model, cycle-level simulator, energy and area models."""
