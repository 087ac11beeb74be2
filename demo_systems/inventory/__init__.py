"""System A, the inventory: where medication containers are, and how they got there."""
