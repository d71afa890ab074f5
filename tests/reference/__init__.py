"""Independent NumPy float64 references, one module per op family. Written from the ops'
definitions, never by calling hipgrad."""
