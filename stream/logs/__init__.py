"""Reading logged traffic (Criteo, Avazu, any CSV, fmstream JSONL) as rows and records."""
