"""One small module per outside system. Each raises only ``scaling.adapters.errors.AdapterError``."""
