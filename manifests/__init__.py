"""The per-sample ledger as Parquet: schema, writing, reading, inspection."""
