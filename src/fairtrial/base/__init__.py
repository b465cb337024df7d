"""The lowest layer: small pure helpers that every other layer may import (content digests, the
one-level intervals recipes report). Imports nothing of fairtrial but its errors."""
