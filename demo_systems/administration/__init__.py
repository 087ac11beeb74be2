"""System B, the eMAR: which doses were given to whom, when. Holds the (synthetic) PHI."""
